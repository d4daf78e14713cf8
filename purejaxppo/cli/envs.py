"""`purejaxppo envs [SUITE]`: every env name per suite, or how to install the suite."""

from __future__ import annotations

import argparse

from purejaxppo.errors import ConfigError


def run_envs(args: argparse.Namespace) -> int:
    from purejaxppo.envs.suites import SUITES

    if args.suite is not None and args.suite not in SUITES:
        raise ConfigError(f"unknown suite {args.suite!r} (known: {', '.join(SUITES)})")
    for suite in SUITES.values():
        if args.suite not in (None, suite.name):
            continue
        if not suite.installed():
            print(f"{suite.name}: not installed ({suite.install_command()})")
            continue
        names = suite.env_names()
        prefix = "" if suite.name == "gymnax" else f"{suite.name}:"
        print(f"{suite.name} ({len(names)} envs):")
        print("\n".join(f"  {prefix}{name}" for name in names))
    return 0
