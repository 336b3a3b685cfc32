"""The configuration reference in docs/ is generated from the option table;
this keeps the two from drifting apart."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SHOAL_BIN_DIR", os.path.join(ROOT, "build", "bin"))


def test_configuration_md_matches_option_table():
    out = subprocess.run([os.path.join(BIN, "shoal-agent"), "--print-config-markdown"],
                         check=True, capture_output=True, text=True).stdout
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        doc = f.read()
    begin = "<!-- BEGIN agent-options -->\n"
    end = "<!-- END agent-options -->"
    assert begin in doc and end in doc
    section = doc[doc.index(begin) + len(begin):doc.index(end)]
    assert section == out, ("docs/configuration.md is out of date; regenerate the table with "
                            "build/bin/shoal-agent --print-config-markdown")
