"""What a run leaves behind and shows: checkpoints, metric logs, summaries, plots, the
console, and the hooks that write them while it trains."""
