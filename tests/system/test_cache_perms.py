"""Cache files are private by default: 0600 files and 0700 directories, so
no other user of the node reads cached layers (private ones included).
--cache-group gives one group read access (0640, directories 02750 owned by
it). A data dir left by an earlier version with 0644/0755 is brought to the
configured modes at start."""

import grp
import os
import stat

import ocibuild


def pull(agent, registry, build, repo):
    b = build.image(layers=2, layer_size=50 * 1024)
    registry.push(b, repo)
    accept = {"Accept": ocibuild.MT_OCI_MANIFEST}
    st, _, body = agent.get("/v2/%s/manifests/%s" % (repo, b.tag), headers=accept)
    assert st == 200, (st, body[:200])
    for d in b.blob_digests():
        st, _, body = agent.get("/v2/%s/blobs/%s" % (repo, d))
        assert st == 200
    return b


def modes(root):
    """{path: (is_dir, mode bits, gid)} for everything under root, root too."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in [""] + dirs + files:
            p = os.path.join(d, name) if name else d
            st = os.lstat(p)
            out[p] = (stat.S_ISDIR(st.st_mode), stat.S_IMODE(st.st_mode), st.st_gid)
    return out


def test_private_by_default(registry, agent_factory, build):
    a = agent_factory(registry.host)
    pull(a, registry, build, "perm/private")
    found = modes(a.data_dir)
    files = [p for p, (is_dir, _, _) in found.items() if not is_dir]
    assert any("/blobs/sha256/" in p for p in files) and any("/manifests/" in p for p in files)
    assert any("/tags/" in p for p in files)
    bad = {p: oct(m) for p, (is_dir, m, _) in found.items() if m != (0o700 if is_dir else 0o600)}
    assert bad == {}, bad


def test_cache_group_and_old_modes_fixed(registry, agent_factory, build):
    gid = grp.getgrnam("daemon").gr_gid
    a = agent_factory(registry.host, start=False, extra_args=["--cache-group", "daemon"])
    # What an earlier version left: world-readable directories and files.
    old = os.path.join(a.data_dir, "blobs", "sha256")
    os.makedirs(old, mode=0o755)
    os.chmod(a.data_dir, 0o755)
    stray = os.path.join(a.data_dir, "tmp")
    os.makedirs(stray, mode=0o755)
    with open(os.path.join(stray, "leftover"), "w") as f:
        f.write("x")
    a.start()
    pull(a, registry, build, "perm/group")
    found = modes(a.data_dir)
    bad = {p: (oct(m), g) for p, (is_dir, m, g) in found.items()
           if m != (0o2750 if is_dir else 0o640) or g != gid}
    assert bad == {}, bad
    assert "op=permissions" in a.logs()
