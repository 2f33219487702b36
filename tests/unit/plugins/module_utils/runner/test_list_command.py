# -*- coding: utf-8 -*-
"""``todoapi-pgbackup list`` (plugins/module_utils/runner/commands/listing.py) over a local repository."""

from __future__ import absolute_import, division, print_function

import json

from ansible_collections.todoapi.pgbackup.plugins.module_utils.runner import cli


def test_list_table_and_json(tmp_path, capsys, write_config, fake_backup):
    config = write_config()
    fake_backup(str(tmp_path / "repo"))
    fake_backup(str(tmp_path / "repo"), backup_id="20240107T020000Z_logical_Other", database="Other",
                finished_at="2024-01-07T02:00:05.000000Z")
    assert cli.main(["--config", config, "list"]) == 0
    out = capsys.readouterr().out
    assert "20240106T020000Z_logical_TodoDb" in out and "custom/zstd" in out and out.startswith("ID ")
    assert cli.main(["--config", config, "list", "--json", "--database", "TodoDb"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [b["id"] for b in listing["backups"]] == ["20240106T020000Z_logical_TodoDb"]
    assert listing["backups"][0]["tables"] == {"public.Todos": 3}
    assert not (tmp_path / "backup.log").exists(), "list is read-only: no lock, no log"


def test_list_of_an_empty_repository(tmp_path, capsys, write_config):
    (tmp_path / "repo").mkdir()
    assert cli.main(["--config", write_config(), "list"]) == 0
    assert capsys.readouterr().out == "No backups in %s.\n" % (tmp_path / "repo")


def test_list_and_verify_take_a_repository_by_name_or_position(tmp_path, capsys, write_config, fake_backup, log_lines):
    config = write_config(repository=None, repositories=[str(tmp_path / "repo"),
                                                         {"name": "copy", "location": str(tmp_path / "copy")}])
    fake_backup(str(tmp_path / "repo"))
    copy = fake_backup(str(tmp_path / "copy"), backup_id="20240107T020000Z_logical_TodoDb",
                       finished_at="2024-01-07T02:00:05.000000Z")
    for selector in ("copy", "2"):
        assert cli.main(["--config", config, "list", "--json", "--repository", selector]) == 0
        listing = json.loads(capsys.readouterr().out)
        assert (listing["repository_name"], [b["id"] for b in listing["backups"]]) == ("copy", [copy["id"]])
    assert cli.main(["--config", config, "list", "--repository", "3"]) == 2
    assert "No repository '3' in this config. Give a name or a number from 1: 1=repo1, 2=copy." in capsys.readouterr().out
    assert cli.main(["--config", config, "verify", "--repository", "copy"]) == 0
    ok = [e for e in log_lines() if e["event"] == "verify_ok"]
    assert [(e["repository"], e["backup_id"]) for e in ok] == [("copy", copy["id"])]
    assert (tmp_path / "copy" / (copy["id"] + ".verify.json")).exists()
