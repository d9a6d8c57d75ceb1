"""Relocating the Feast registry of a moved work dir: the offline FileSource paths it stores.

Feast keeps each FileSource's absolute path in its registry, once as a data source and again inside every feature
view (and every saved feature view version) built on it, and DuckDB and serving read that path as it is. Applying a
view whose only change is its source does not replace the stored source (Feast treats it as configuration and keeps
the old one), so the stored registry is rewritten here: every string field under the old location, through the
registry's public ``proto()`` / ``commit()``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from feast import FeatureStore
from feast.protos.feast.core.FeatureView_pb2 import FeatureView as FeatureViewProto
from feast.protos.feast.core.LabelView_pb2 import LabelView as LabelViewProto
from feast.protos.feast.core.OnDemandFeatureView_pb2 import OnDemandFeatureView as OnDemandFeatureViewProto
from feast.protos.feast.core.StreamFeatureView_pb2 import StreamFeatureView as StreamFeatureViewProto
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from graphrec.relocation import Move, Rewrite

OFFLINE_FOLDER = "offline"  # Settings.offline_dir
VERSION_PROTOS: dict[str, type[Message]] = {  # FeatureViewVersionRecord.feature_view_type -> its serialized proto
    "feature_view": FeatureViewProto,
    "stream_feature_view": StreamFeatureViewProto,
    "on_demand_feature_view": OnDemandFeatureViewProto,
    "label_view": LabelViewProto,
}


def _rewrite_message(message: Message, move: Move) -> int:
    """Rewrite every string (and saved feature view version) under the old location in ``message``; how many."""
    changed = 0
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            strings = value if field.is_repeated else [value]
            new = [move.rewrite(text) for text in strings]
            changed += sum(a != b for a, b in zip(strings, new, strict=True))
            if field.is_repeated:
                value[:] = new
            else:
                setattr(message, field.name, new[0])
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            changed += _rewrite_map(value, field.message_type.fields_by_name["value"], move)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            changed += sum(_rewrite_message(item, move) for item in (value if field.is_repeated else [value]))
        elif field.name == "feature_view_proto" and message.feature_view_type in VERSION_PROTOS:
            saved = VERSION_PROTOS[message.feature_view_type].FromString(value)
            if found := _rewrite_message(saved, move):
                message.feature_view_proto = saved.SerializeToString()
                changed += found
    return changed


def _rewrite_map(mapping: dict, value_field: FieldDescriptor, move: Move) -> int:
    """Rewrite the values of a protobuf map field (string or message values)."""
    if value_field.type == FieldDescriptor.TYPE_MESSAGE:
        return sum(_rewrite_message(item, move) for item in mapping.values())
    if value_field.type != FieldDescriptor.TYPE_STRING:
        return 0
    changed = {key: move.rewrite(text) for key, text in mapping.items() if move.count(text)}
    mapping.update(changed)
    return len(changed)


def stored_roots(store: FeatureStore) -> set[Path]:
    """The work dirs the registry's file sources read from (``<root>/offline/<view>``)."""
    roots = set()
    for source in store.list_data_sources():
        path = Path(getattr(source, "path", "") or "")
        if path.is_absolute() and path.parent.name == OFFLINE_FOLDER:
            roots.add(path.parent.parent)
    return roots


def relocate_registry(store: FeatureStore, move: Move, registry_file: str) -> list[Rewrite]:
    """Rewrite every path under the old location in ``store``'s registry; one Rewrite per registry collection
    changed (``registry_file``: how the registry is named in them)."""
    store.registry.refresh()
    registry = store.registry.proto()
    counts: Counter[str] = Counter()
    for field, value in registry.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            items = value if field.is_repeated else [value]
            counts[field.name] += sum(_rewrite_message(item, move) for item in items)
    if sum(counts.values()):
        store.registry.commit()
    return [Rewrite(registry_file, name, count) for name, count in sorted(counts.items()) if count]
