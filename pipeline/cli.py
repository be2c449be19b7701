"""The command line: parse arguments, call the library, map errors to exit codes.

Exit codes: 0 ok; 1 data or pipeline error; 2 config or usage error. Errors print as plain
text without a traceback unless ``--debug``. Only argparse and the error classes are imported
at start-up, so ``--help`` answers at once; everything heavy is imported by the command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import ConfigError, PipelineError, UsageError

STAGE_NAMES = ("ingest", "harmonize", "clean", "weight", "estimate", "export", "trends")


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 2 through our handler) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}", hint=f"see '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="survey-pipeline",
        description="Ingest, clean, weight, estimate and export survey data from one YAML config.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--quiet", action="store_true", help="no progress on stderr")
        p.add_argument("--debug", action="store_true", help="show tracebacks")

    p = sub.add_parser("run", help="run the pipeline for a study config")
    p.add_argument("config", type=Path, help="the study YAML, e.g. configs/insecure_communities.yaml")
    p.add_argument("--wave", action="append", metavar="ID", help="run only this wave (repeatable)")
    p.add_argument("--from", dest="from_stage", choices=STAGE_NAMES, metavar="STAGE", help="rerun from this stage on")
    p.add_argument("--only", choices=STAGE_NAMES, metavar="STAGE", help="rerun only this stage")
    p.add_argument("--force", action="store_true", help="rerun every stage, fresh or not")
    common(p)

    p = sub.add_parser("validate", help="check the config and the raw files; write nothing")
    p.add_argument("config", type=Path)
    common(p)

    p = sub.add_parser("status", help="which stages are fresh or stale, and why")
    p.add_argument("config", type=Path)
    p.add_argument("--wave", action="append", metavar="ID")
    common(p)

    p = sub.add_parser("simulate", help="write the synthetic demo delivery (raw data, answer key, targets)")
    p.add_argument("--wave", default="2012", metavar="ID", help="wave to simulate (default 2012)")
    p.add_argument("--seed", type=int, default=None, metavar="N", help="random seed (default: the wave's demo seed)")
    p.add_argument("--n", type=int, default=None, metavar="N", help="completed interviews (default: the wave's, 2004 in 2012)")
    p.add_argument("--out", type=Path, default=Path("raw"), metavar="DIR", help="output folder (default raw/)")
    p.add_argument("--nonrespondents", action="store_true",
                   help="keep the eligible nonrespondents (STATUS = 3, frame and screener variables only), for a nonresponse adjustment; not the demo's files")
    common(p)

    p = sub.add_parser("init", help="write a commented starter config for a labelled raw file")
    p.add_argument("raw", type=Path, help="the raw file: .sav, .dta, .csv or .parquet (with its codebook), ...")
    p.add_argument("--out", type=Path, default=None, metavar="YAML", help="the config to write (default configs/<name>.yaml beside a raw/ folder, else next to the file); never overwritten")
    p.add_argument("--study", default=None, metavar="SLUG", help="the study slug (default: from the file's name)")
    common(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.version:
            from pipeline import __version__

            print(f"survey-pipeline {__version__}")
            return 0
        if not args.command:
            parser.print_help()
            return 2
        return _COMMANDS[args.command](args)
    except PipelineError as exc:
        if debug:
            raise
        kind = "config error" if isinstance(exc, ConfigError) else "error"
        print(f"survey-pipeline: {kind}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("survey-pipeline: interrupted; finished stages are kept, rerun to continue", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `survey-pipeline status CONFIG | head`: the reader left; not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.runner import Progress, run

    config = load_config(args.config)
    progress = Progress(quiet=args.quiet)
    result = run(config, waves=args.wave, from_stage=args.from_stage, only=args.only, force=args.force, progress=progress)
    if not result.ran:
        progress.line("nothing to do: every stage is fresh (use --force to rerun)")
    for wave_id in sorted({r.wave for r in result.records}):
        est = result.outputs / wave_id / "estimates.csv"
        if est.is_file():
            print(f"results: {_display(est)}")
        report = result.outputs / wave_id / "tables" / "topline.md"
        if report.is_file():
            print(f"tables:  {_display(report)}")
    trend = result.outputs / "trends" / "estimates.csv"
    if trend.is_file() and len({w.id for w in config.waves}) > 1:
        print(f"trends:  {_display(trend)}")
    print(f"manifest: {_display(result.outputs / 'manifest.json')}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.validate import validate

    config = load_config(args.config)
    notes = validate(config)
    for line in notes:
        print(line)
    print(f"{args.config}: config and raw files OK")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.runner import run_in_progress, status

    config = load_config(args.config)
    running = run_in_progress(config.outputs)
    if running:
        who = f"pid {running['pid']}, started {running['started']}" if running["pid"] else f"lock {running['lock']} is held"
        print(f"a run of this study is in progress ({who}): the stages it has not reached or finished show as they were")
    rows = status(config, waves=args.wave)
    for s in rows:
        why = f"  ({s.reason})" if s.reason else ""
        when = f"  (last ran {s.finished})" if s.finished else ""
        print(f"[{s.wave}] {s.stage:<9} {s.state}{why}{when}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from pipeline.simulate import simulate_delivery, write_delivery

    if args.n is not None and args.n < 8:
        raise UsageError(f"--n {args.n}: need at least 8 completed interviews (two per county)")
    delivery = simulate_delivery(wave=args.wave, seed=args.seed, n=args.n, nonrespondents=args.nonrespondents)  # None: the wave's own default
    for path in write_delivery(delivery, args.out):
        print(f"wrote {_display(path)}")
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    import os

    from pipeline.init import starter_config
    from pipeline.io import write_text

    raw: Path = args.raw
    if args.out is not None:
        out = args.out
    elif raw.resolve().parent.name == "raw":
        out = raw.resolve().parent.parent / "configs" / f"{raw.stem}.yaml"
    else:
        out = raw.resolve().parent / f"{raw.stem}.yaml"
    if out.exists():
        raise UsageError(
            f"init: {_display(out)} exists; init never overwrites a config",
            hint=f"write it elsewhere with --out (e.g. --out {_display(out.with_name(out.stem + '_new.yaml'))}), or move the old file away",
        )
    rel = Path(os.path.relpath(raw.resolve(), out.resolve().parent)).as_posix()
    text = starter_config(raw, study=args.study, raw=rel)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # made while we read the file
        raise UsageError(f"init: {_display(out)} exists; init never overwrites a config", hint="rerun with another --out")
    write_text(out, text)
    print(f"wrote {_display(out)}: check the lines marked GUESS, then: survey-pipeline validate {_display(out)}")
    return 0


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


_COMMANDS = {"run": _cmd_run, "validate": _cmd_validate, "status": _cmd_status, "simulate": _cmd_simulate, "init": _cmd_init}


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
