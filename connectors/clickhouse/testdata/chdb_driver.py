"""Runs SQL on chDB (current ClickHouse in process) for chdb_test.go.

    python chdb_driver.py DIR

opens a chDB session whose data lives in DIR, writes one JSON line
{"version": "<ClickHouse version>"}, then answers each request line on
stdin, {"sql": "...", "format": "..."} (format defaults to TabSeparated),
with one line: {"data": "<the output in that format>"} or
{"error": "<ClickHouse's message>"}. It ends at the end of stdin.

Only those lines go to stdout: whatever the engine prints goes to stderr.
"""

import json
import os
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: chdb_driver.py DIR")
    # Answers go to the original stdout; fd 1 becomes stderr, so nothing the
    # engine writes can be taken for an answer.
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    from chdb import session

    s = session.Session(sys.argv[1])

    def answer(obj):
        answers.write(json.dumps(obj) + "\n")
        answers.flush()

    version = s.query("SELECT version()", "TabSeparated").data().strip()
    answer({"version": version})
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            res = s.query(req["sql"], req.get("format") or "TabSeparated")
            answer({"data": res.data() if res is not None else ""})
        except Exception as e:  # ChdbError and anything else: the test says what
            answer({"error": "%s: %s" % (type(e).__name__, e)})
    s.close()


if __name__ == "__main__":
    main()
