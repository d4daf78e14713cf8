"""Readers of what the trackers wrote, without their services: TensorBoard's TFRecord event
files (tensorboardX's protos) and offline Weights & Biases runs (wandb's record protos in its
block log)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any


def tensorboard_events(directory: Path) -> list[Any]:
    """Every `Event` in the event files of `directory`, file by file."""
    from tensorboardX.proto import event_pb2

    events = []
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            events.append(event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length]))
            offset += 12 + length + 4
    return events


def tensorboard_scalars(directory: Path) -> dict[str, list[float]]:
    """Scalars by tag in the event files of `directory`."""
    scalars: dict[str, list[float]] = {}
    for event in tensorboard_events(directory):
        for value in event.summary.value:
            if value.WhichOneof("value") == "simple_value":
                scalars.setdefault(value.tag, []).append(value.simple_value)
    return scalars


WANDB_BLOCK = 32768  # wandb's log: blocks of records, each with a 7-byte header
RECORD_FULL, RECORD_FIRST, RECORD_MIDDLE, RECORD_LAST = 1, 2, 3, 4


def wandb_record_bytes(path: Path) -> list[bytes]:
    """The records of one `.wandb` file, their pieces joined across blocks."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb run file"
    records, pending, offset = [], b"", 7  # the file's own 7-byte header comes first
    while offset + 7 <= len(data):
        left = WANDB_BLOCK - offset % WANDB_BLOCK
        _, length, kind = struct.unpack_from("<IHB", data, offset)
        if left < 7 or (length == 0 and kind == 0):  # the rest of the block is padding
            offset += left
            continue
        piece = data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        if kind == RECORD_FULL:
            records.append(piece)
        elif kind == RECORD_FIRST:
            pending = piece
        elif kind == RECORD_MIDDLE:
            pending += piece
        elif kind == RECORD_LAST:
            records.append(pending + piece)
    return records


def wandb_runs(directory: Path) -> list[dict[str, Any]]:
    """The offline runs under `directory/wandb`, by name (then by file): id, project, group,
    config, history rows (`{key: value}`, JSON-decoded) and summary."""
    from wandb.proto import wandb_internal_pb2

    runs = []
    for path in sorted(directory.glob("wandb/offline-run-*/run-*.wandb")):
        run: dict[str, Any] = {"history": [], "summary": {}, "config": {}}
        for raw in wandb_record_bytes(path):
            record = wandb_internal_pb2.Record.FromString(raw)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run |= {"name": record.run.display_name, "group": record.run.run_group}
                run["id"] = record.run.run_id
                run["project"] = record.run.project
                run["config"] |= {u.key: json.loads(u.value_json) for u in record.run.config.update}
            elif kind == "config":
                run["config"] |= {u.key: json.loads(u.value_json) for u in record.config.update}
            elif kind == "history":
                run["history"].append(nested(record.history.item))
            elif kind == "summary":
                run["summary"] |= nested(record.summary.update)
        runs.append(run)
    return sorted(runs, key=lambda run: run["name"])  # stable: a name's files stay in order


def nested(items: Any) -> dict[str, Any]:
    """Items keyed by `key`, or by a `nested_key` path (a logged media object's fields), as
    nested dicts of JSON-decoded values."""
    row: dict[str, Any] = {}
    for item in items:
        *parents, last = [item.key] if item.key else list(item.nested_key)
        place = row
        for parent in parents:
            place = place.setdefault(parent, {})
        place[last] = json.loads(item.value_json)
    return row
