"""The configuration reference in docs/ is generated from the option table;
this keeps the two from drifting apart."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SHOAL_BIN_DIR", os.path.join(ROOT, "build", "bin"))


def generated_section_matches(daemon):
    out = subprocess.run([os.path.join(BIN, "shoal-" + daemon), "--print-config-markdown"],
                         check=True, capture_output=True, text=True).stdout
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        doc = f.read()
    begin = "<!-- BEGIN %s-options -->\n" % daemon
    end = "<!-- END %s-options -->" % daemon
    assert begin in doc and end in doc
    section = doc[doc.index(begin) + len(begin):doc.index(end)]
    assert section == out, ("docs/configuration.md is out of date; regenerate the table with "
                            "build/bin/shoal-%s --print-config-markdown" % daemon)


def test_configuration_md_matches_option_table():
    generated_section_matches("agent")


def test_configuration_md_matches_tracker_option_table():
    generated_section_matches("tracker")


def test_threat_model_names_real_tests():
    """Every test docs/threat-model.md names as proof exists: files under
    tests/, functions after `::` (a bare `::name` belongs to the file named
    before it) and the unit tests listed in parentheses after a .c file."""
    import re
    with open(os.path.join(ROOT, "docs", "threat-model.md")) as f:
        doc = f.read()
    missing = []
    last = None
    sources = {}

    def text_of(rel):
        if rel not in sources:
            p = os.path.join(ROOT, "tests", rel)
            sources[rel] = open(p).read() if os.path.exists(p) else None
        return sources[rel]
    named = 0
    for m in re.finditer(r"`((?:system|unit)/[\w/]+\.(?:py|c))?(::\w+)?`|\(((?:`test_\w+`,?\s*)+)\)",
                         doc):
        if m.group(1):
            last = m.group(1)
            named += 1
            if text_of(last) is None:
                missing.append(last)
                continue
        fn = (m.group(2) or "")[2:]
        names = [fn] if fn else re.findall(r"`(test_\w+)`", m.group(3) or "")
        for name in names:
            src = text_of(last) if last else None
            pat = r"def %s\(" if last and last.endswith(".py") else r"\b%s\("
            if src is None or not re.search(pat % name, src):
                missing.append("%s::%s" % (last, name))
    assert named >= 20, "threat-model.md names too few tests (%d): parser broken?" % named
    assert not missing, "docs/threat-model.md names tests that do not exist: %s" % missing
