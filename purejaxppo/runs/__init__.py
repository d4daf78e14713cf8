"""Running populations: joining processes, placing runs on devices, compiling for R runs,
the chunked host loop, the memory budget and throughput benchmarks."""
