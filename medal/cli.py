"""The ``medal`` command. Each subcommand parses its arguments, then calls one API function.

Heavy libraries (torch, monai, nibabel) are imported inside the commands, so ``medal --help`` is
instant.
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def _progress(desc: str):
    def wrap(items):
        from tqdm import tqdm

        return tqdm(items, desc=desc, unit="case", leave=False, disable=None, file=sys.stderr)

    return wrap


def cmd_dataset_check(args) -> int:
    from medal.data import check_dataset

    report = check_dataset(args.path, labels_dir=args.labels, progress=_progress("checking"))
    if args.json:
        print(report.to_json())
    else:
        if args.verbose:
            for c in report.cases:
                status = "ok" if c.ok else f"{len(c.problems)} problem(s)"
                print(f"{c.case_id}: shape {c.shape} spacing {c.spacing} dtype {c.dtype} "
                      f"labels {c.label_values} -- {status}")
        print(report.summary())
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def cmd_demo(args) -> int:
    from medal.data import check_dataset, sample_dataset

    root = sample_dataset()
    print(f"medal demo: bundled sample at {root}")
    report = check_dataset(root, progress=_progress("checking"))
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def cmd_sample_path(args) -> int:
    from medal.data import sample_dataset

    print(sample_dataset())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from medal import __version__

    parser = argparse.ArgumentParser(
        prog="medal",
        description="Active learning for 3D medical image segmentation: spend an expert's annotation "
        "time where it helps the model most.",
    )
    parser.add_argument("--version", action="version", version=f"medal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ds = sub.add_parser("dataset", help="inspect and validate datasets")
    ds.set_defaults(group_parser=ds)
    ds_sub = ds.add_subparsers(dest="dataset_command", metavar="ACTION")
    chk = ds_sub.add_parser("check", help="check every case of a dataset and report each problem",
                            description="Check every case (shape, spacing, label values, grid match, "
                            "NaN/Inf, readability). Exits 1 if any problem was found.")
    chk.add_argument("path", help="dataset folder (MSD/nnU-Net layout or a plain folder of images)")
    chk.add_argument("--labels", default=None, help="labels folder (default: labelsTr/ or labels/)")
    chk.add_argument("--json", action="store_true", help="print the full report as JSON")
    chk.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    chk.set_defaults(func=cmd_dataset_check)

    demo = sub.add_parser("demo", help="run the main job on the bundled hippocampus sample")
    demo.set_defaults(func=cmd_demo)

    sp = sub.add_parser("sample-path", help="print where the bundled sample dataset is installed")
    sp.set_defaults(func=cmd_sample_path)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        # a group without its action (e.g. `medal dataset`) prints that group's help
        getattr(args, "group_parser", parser).print_help()
        return EXIT_USAGE
    from medal.config import ConfigError
    from medal.data.errors import DatasetError

    try:
        return args.func(args)
    except (DatasetError, ConfigError, FileExistsError) as exc:
        print(f"medal: error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS


if __name__ == "__main__":
    sys.exit(main())
