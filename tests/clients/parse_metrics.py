"""Parses Prometheus text from stdin with the Prometheus project's own parser
(prometheus_client.parser) and prints every sample as one JSON object per line:
{"name": ..., "labels": {...}, "value": ..., "type": ..., "family": ...}. A line the format does not allow fails the
parse (exit status 1, the parser's message on stderr)."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    text = sys.stdin.read()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            print(json.dumps({"name": sample.name, "labels": sample.labels,
                              "value": sample.value, "type": family.type,
                              "family": family.name}))


if __name__ == "__main__":
    main()
