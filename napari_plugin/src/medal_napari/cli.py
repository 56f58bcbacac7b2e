"""``medal-annotate ROUND`` (also ``medal annotate ROUND``): open a round in napari."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medal-annotate", description="Annotate a medal round's tasks in napari: "
                                "paint, mark done, everything saved to ROUND/annotations for `medal ingest`.")
    p.add_argument("round", help="round folder holding tasks.json (or the tasks.json itself); "
                   "'sample' opens the bundled hippocampus round")
    p.add_argument("--user", default=None, help="name recorded in locks and the time log (default: login name)")
    p.add_argument("--autosave", type=float, default=30.0, help="autosave interval in seconds (default 30)")
    p.add_argument("--idle", type=float, default=60.0,
                   help="pauses longer than this many seconds are not counted as annotation time (default 60)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--from-prediction", dest="from_prediction", action="store_true", default=None,
                      help="start every new task from the model's prediction, to correct it (default: as the "
                      "round was priced, i.e. on for a round selected with costs.annotation: correct)")
    mode.add_argument("--from-empty", dest="from_prediction", action="store_false",
                      help="start every new task from an empty unit, whatever the round was priced for")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import napari

    from . import annotate
    from .store import AnnotationFileError, find_tasks_file

    path = args.round
    if path == "sample":
        from ._sample_data import prepare_sample_round

        path = prepare_sample_round()
    try:
        find_tasks_file(path)
    except AnnotationFileError as exc:
        print(f"medal-annotate: error: {exc}", file=sys.stderr)
        return 2
    viewer, widget = annotate(path, autosave_s=args.autosave, idle_s=args.idle, user=args.user,
                              start_from_prediction=args.from_prediction)
    session = widget.session
    napari.run()
    # napari has deleted the widget by now (its destroyed signal already saved and unlocked): close
    # the session itself, which is idempotent, never the deleted Qt widget
    if session is not None:
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
