"""Create (or rebuild) a generated Todo API database: scripts/sample_db.py --port 55432 --password-file F --size-mb 20"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.lib.tododb import create_todo_db  # noqa: E402  (the same generator the tests and the bench use)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--database", default="TodoDb")
    parser.add_argument("--size-mb", type=float, default=20)
    args = parser.parse_args()
    with open(args.password_file) as handle:
        password = handle.read().strip()
    params = {"host": args.host, "port": args.port, "user": args.user, "password": password, "database": "postgres"}
    counts = create_todo_db(params, dbname=args.database, size_mb=args.size_mb)
    print(json.dumps(counts, sort_keys=True))


if __name__ == "__main__":
    main()
