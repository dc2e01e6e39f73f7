"""The commands' argument parser: a bad option is ONE ``error: …`` line, exit 2."""

from __future__ import annotations

import argparse

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse with one line on a bad option (``error: PROG: message (see PROG --help)``),
    like every other error of these commands: no usage block for a user to read past or a
    log collector to split. Subcommands inherit it (argparse builds them with this class)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see {self.prog} --help)\n")
