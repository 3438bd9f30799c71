"""The fast record encoder writes exactly what json does: the dataset files stay byte-identical."""
import json

from au_core import atomic
from data_prep import json_records

RECORDS = [
    {"instruction": "Describe.", "input": "AU06: 1.40, AU12: 2.10", "output": "A smile \"wide\" — 笑\n",
     "video": "clip_1", "frame": 7},
    {"text": "", "score": 0.25, "big": 10 ** 20, "flag": True, "none": None, "neg": -3, "ctrl": "\x00\t\u2028"},
    {},
]


def test_list_items_and_lines_match_json():
    fields = [json_records.json_fields(r) for r in RECORDS]
    items = [json_records.json_list_item(f) for f in fields]
    assert json_records.json_list(items) == atomic.dumps_json(RECORDS)
    assert json_records.json_list([]) == atomic.dumps_json([])
    assert json_records.json_list(items[:1]) == atomic.dumps_json(RECORDS[:1])
    assert [json_records.json_line(f) for f in fields] == [json.dumps(r, ensure_ascii=False) for r in RECORDS]
