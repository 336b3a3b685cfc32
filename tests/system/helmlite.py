"""A small renderer for the subset of Helm's Go templates that
deploy/helm/shoal uses, for machines without `helm` (Debian does not
package it). test_deploy.py renders the chart with real `helm template`
when it is on PATH and with this otherwise.

It implements text/template's actions (if/else if/else, range, with,
define, variables, pipelines, whitespace trimming, comments) and the Sprig
and Helm functions the chart calls. Anything else raises HelmliteError
naming the construct, so a chart edit that needs more fails loudly here
instead of rendering something different from Helm."""

import base64
import hashlib
import json
import os
import random
import re
import string

import yaml


class HelmliteError(Exception):
    pass


class _Fail(Exception):
    pass


_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def _lex(text):
    """[("text", s) | ("action", s)] with trim markers applied."""
    out = []
    pos = 0
    for m in _ACTION.finditer(text):
        chunk = text[pos:m.start()]
        if m.group(1):
            chunk = chunk.rstrip(" \t\r\n")
        out.append(["text", chunk])
        out.append(["action", m.group(2), bool(m.group(3))])
        pos = m.end()
    out.append(["text", text[pos:]])
    for i, tok in enumerate(out):
        if tok[0] == "action" and tok[2] and i + 1 < len(out):
            out[i + 1][1] = out[i + 1][1].lstrip(" \t\r\n")
    return [(t[0], t[1]) for t in out]


# ------------------------------------------------------------ expressions --

_TOKEN = re.compile(r'''\s*(?:
    (?P<str>"(?:[^"\\]|\\.)*") |
    (?P<raw>`[^`]*`) |
    (?P<num>-?\d+(?:\.\d+)?) |
    (?P<decl>:=) |
    (?P<assign>=) |
    (?P<pipe>\|) |
    (?P<lp>\() | (?P<rp>\)) |
    (?P<comma>,) |
    (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*) |
    (?P<field>(?:\.[A-Za-z0-9_]+)+|\.) |
    (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )''', re.X)


def _tokens(s):
    pos, out = 0, []
    s = s.strip()
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m or m.end() == pos:
            raise HelmliteError("cannot parse %r at %r" % (s, s[pos:]))
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, toks):
        self.toks = toks
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self):
        t = self.peek()
        self.i += 1
        return t

    def pipeline(self):
        cmds = [self.command()]
        while self.peek()[0] == "pipe":
            self.take()
            cmds.append(self.command())
        return ("pipe", cmds)

    def command(self):
        args = []
        while self.peek()[0] not in (None, "pipe", "rp"):
            args.append(self.operand())
        if not args:
            raise HelmliteError("empty command in %r" % (self.toks,))
        return args

    def operand(self):
        kind, v = self.take()
        if kind == "str":
            return ("lit", json.loads(v))
        if kind == "raw":
            return ("lit", v[1:-1])
        if kind == "num":
            return ("lit", float(v) if "." in v else int(v))
        if kind == "lp":
            p = self.pipeline()
            if self.take()[0] != "rp":
                raise HelmliteError("missing )")
            return p
        if kind == "var":
            name, _, rest = v.partition(".")
            return ("var", name, rest.split(".") if rest else [])
        if kind == "field":
            return ("field", [] if v == "." else v[1:].split("."))
        if kind == "ident":
            if v in ("true", "false"):
                return ("lit", v == "true")
            if v == "nil":
                return ("lit", None)
            return ("func", v)
        raise HelmliteError("unexpected %s %r" % (kind, v))


def _parse_expr(s):
    toks = _tokens(s)
    decl = None
    # "$a := pipeline", "$a = pipeline", "$i, $v := pipeline"
    names = []
    j = 0
    while j < len(toks) and toks[j][0] == "var":
        names.append(toks[j][1])
        j += 1
        if j < len(toks) and toks[j][0] == "comma":
            j += 1
            continue
        break
    if names and j < len(toks) and toks[j][0] in ("decl", "assign"):
        decl = (names, toks[j][0])
        toks = toks[j + 1:]
    p = _Parser(toks)
    pipe = p.pipeline()
    if p.i != len(toks):
        raise HelmliteError("trailing tokens in %r" % s)
    return decl, pipe


# --------------------------------------------------------------- the tree --

def _parse(tokens, i, stop):
    """Nodes until one of the words in stop; returns (nodes, i, word, rest)."""
    nodes = []
    while i < len(tokens):
        kind, val = tokens[i]
        i += 1
        if kind == "text":
            if val:
                nodes.append(("text", val))
            continue
        if val.startswith("/*"):
            continue
        word, _, rest = val.partition(" ")
        if word in stop or (word == "else" and "else" in stop):
            return nodes, i, word, rest.strip()
        if word in ("if", "with"):
            branches = []
            cond = rest
            while True:
                body, i, w, r = _parse(tokens, i, ("else", "end"))
                branches.append((_parse_expr(cond), body))
                if w == "end":
                    nodes.append((word, branches, None))
                    break
                if r.startswith("if ") and word == "if":
                    cond = r[3:]
                    continue
                els, i, w2, _ = _parse(tokens, i, ("end",))
                nodes.append((word, branches, els))
                break
        elif word == "range":
            body, i, w, _ = _parse(tokens, i, ("else", "end"))
            els = None
            if w == "else":
                els, i, _, _ = _parse(tokens, i, ("end",))
            nodes.append(("range", _parse_expr(rest), body, els))
        elif word == "define":
            body, i, _, _ = _parse(tokens, i, ("end",))
            nodes.append(("define", json.loads(rest), body))
        elif word in ("block", "template", "break", "continue"):
            raise HelmliteError("unsupported action %r" % word)
        else:
            nodes.append(("action", _parse_expr(val)))
    if stop:
        raise HelmliteError("missing {{ end }}")
    return nodes, i, None, ""


# ---------------------------------------------------------------- runtime --

def _truth(v):
    return not (v is None or v is False or v == 0 and not isinstance(v, bool) or
                (isinstance(v, (str, list, dict, tuple)) and len(v) == 0))


def _str(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v == int(v) and abs(v) < 1e21:
        return "%d" % v
    if isinstance(v, (dict, list)):
        raise HelmliteError("printing a %s; use toYaml or toJson" % type(v).__name__)
    return str(v)


def _to_yaml(v):
    if v is None:
        return "null"
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=True).rstrip("\n")


def _indent(n, s):
    pad = " " * int(n)
    return "\n".join(pad + ln for ln in s.split("\n"))


class Renderer:
    def __init__(self, chart_dir, values=None, release="shoal", namespace="shoal"):
        self.chart_dir = chart_dir
        with open(os.path.join(chart_dir, "Chart.yaml")) as f:
            chart = yaml.safe_load(f)
        with open(os.path.join(chart_dir, "values.yaml")) as f:
            vals = yaml.safe_load(f) or {}
        _merge(vals, values or {})
        self.root = {
            "Values": vals,
            "Release": {"Name": release, "Namespace": namespace, "Service": "Helm",
                        "IsInstall": True, "IsUpgrade": False},
            "Chart": {"Name": chart["name"], "Version": chart["version"],
                      "AppVersion": chart.get("appVersion", "")},
            "Files": {"Get": self._file},
        }
        self.defines = {}
        self.templates = {}
        tdir = os.path.join(chart_dir, "templates")
        for name in sorted(os.listdir(tdir)):
            if not (name.endswith(".yaml") or name.endswith(".tpl")):
                continue
            with open(os.path.join(tdir, name)) as f:
                nodes, _, _, _ = _parse(_lex(f.read()), 0, ())
            self.templates[name] = nodes
            for n in nodes:
                if n[0] == "define":
                    self.defines[n[1]] = n[2]

    def _file(self, path):
        with open(os.path.join(self.chart_dir, path)) as f:
            return f.read()

    def render(self):
        """{template file name: rendered text} for templates/*.yaml."""
        out = {}
        for name, nodes in self.templates.items():
            if name.startswith("_") or not name.endswith(".yaml"):
                continue
            buf = []
            self._exec(nodes, self.root, [{"$": self.root}], buf)
            out[name] = "".join(buf)
        return out

    def documents(self):
        """Every non-empty YAML document the chart renders."""
        docs = []
        for name, text in sorted(self.render().items()):
            for d in yaml.safe_load_all(text):
                if d:
                    docs.append(d)
        return docs

    # -- execution --

    def _exec(self, nodes, dot, scopes, buf):
        for n in nodes:
            kind = n[0]
            if kind == "text":
                buf.append(n[1])
            elif kind == "define":
                continue
            elif kind == "action":
                decl, pipe = n[1]
                v = self._pipe(pipe, dot, scopes)
                if decl:
                    self._bind(decl, v, scopes)
                else:
                    buf.append(_str(v))
            elif kind in ("if", "with"):
                for (decl, pipe), body in n[1]:
                    v = self._pipe(pipe, dot, scopes)
                    if _truth(v):
                        inner = [{}] + scopes
                        if decl:
                            self._bind(decl, v, inner)
                        self._exec(body, v if kind == "with" else dot, inner, buf)
                        break
                else:
                    if n[2] is not None:
                        self._exec(n[2], dot, [{}] + scopes, buf)
            elif kind == "range":
                decl, pipe = n[1]
                v = self._pipe(pipe, dot, scopes)
                items = list(v.items()) if isinstance(v, dict) else list(enumerate(v or []))
                if isinstance(v, dict):
                    items.sort()
                for k, item in items:
                    inner = [{}] + scopes
                    if decl:
                        names = decl[0]
                        if len(names) == 1:
                            inner[0][names[0]] = item
                        else:
                            inner[0][names[0]], inner[0][names[1]] = k, item
                    self._exec(n[2], item, inner, buf)
                if not items and n[3] is not None:
                    self._exec(n[3], dot, [{}] + scopes, buf)
            else:
                raise HelmliteError("unknown node %r" % kind)

    def _bind(self, decl, v, scopes):
        names, op = decl
        if len(names) != 1:
            raise HelmliteError("multiple variables outside range")
        if op == "decl":
            scopes[0][names[0]] = v
            return
        for s in scopes:
            if names[0] in s:
                s[names[0]] = v
                return
        raise HelmliteError("assignment to undeclared %s" % names[0])

    def _pipe(self, pipe, dot, scopes):
        v = _NOARG = object()
        for cmd in pipe[1]:
            v = self._command(cmd, dot, scopes, None if v is _NOARG else v, v is not _NOARG)
        return v

    def _command(self, cmd, dot, scopes, prev, has_prev):
        head = cmd[0]
        if head[0] == "func":
            args = [self._operand(a, dot, scopes) for a in cmd[1:]]
            if has_prev:
                args.append(prev)
            return self._call(head[1], args, dot)
        if len(cmd) > 1 or has_prev:
            target = self._operand(head, dot, scopes)
            if callable(target):
                args = [self._operand(a, dot, scopes) for a in cmd[1:]]
                if has_prev:
                    args.append(prev)
                return target(*args)
            raise HelmliteError("arguments given to a non-function %r" % (head,))
        return self._operand(head, dot, scopes)

    def _operand(self, op, dot, scopes):
        kind = op[0]
        if kind == "lit":
            return op[1]
        if kind == "pipe":
            return self._pipe(op, dot, scopes)
        if kind == "field":
            return _walk(dot, op[1])
        if kind == "var":
            for s in scopes:
                if op[1] in s:
                    return _walk(s[op[1]], op[2])
            raise HelmliteError("undefined variable %s" % op[1])
        if kind == "func":
            return self._call(op[1], [], dot)
        raise HelmliteError("bad operand %r" % (op,))

    def _call(self, name, a, dot):
        f = _FUNCS.get(name)
        if name == "include":
            buf = []
            if a[0] not in self.defines:
                raise HelmliteError("include of undefined template %r" % a[0])
            self._exec(self.defines[a[0]], a[1], [{"$": a[1]}], buf)
            return "".join(buf)
        if name == "lookup":
            return {}  # helm template: no cluster to look in
        if name == "fail":
            raise _Fail(a[0])
        if f is None:
            raise HelmliteError("unsupported function %r" % name)
        return f(*a)


def _walk(v, path):
    for p in path:
        if isinstance(v, dict):
            v = v.get(p)
        elif v is None:
            return None
        else:
            raise HelmliteError("field %s of a %s" % (p, type(v).__name__))
    return v


def _merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


def _default(d, v=None):
    return v if _truth(v) else d


def _eq(a, *bs):
    return any(a == b for b in bs)


def _product(xs):
    out = 1
    for x in xs:
        out *= x
    return out


def _num(v):
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return 0
    return int(v or 0)


_FUNCS = {
    "default": _default,
    "quote": lambda *a: " ".join('"%s"' % _str(x).replace("\\", "\\\\").replace('"', '\\"')
                                 for x in a),
    "squote": lambda *a: " ".join("'%s'" % _str(x) for x in a),
    "toYaml": _to_yaml,
    "toJson": lambda v: json.dumps(v, separators=(",", ":"), sort_keys=True),
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "indent": _indent,
    "printf": lambda fmt, *a: re.sub(r"%[sdv]", "%s", fmt) % tuple(_str(x) for x in a),
    "print": lambda *a: "".join(_str(x) for x in a),
    "trunc": lambda n, s: s[:n] if n >= 0 else s[n:],
    "trimSuffix": lambda suf, s: s[:-len(suf)] if suf and s.endswith(suf) else s,
    "trimPrefix": lambda pre, s: s[len(pre):] if pre and s.startswith(pre) else s,
    "contains": lambda sub, s: sub in s,
    "replace": lambda old, new, s: s.replace(old, new),
    "required": lambda msg, v: v if _truth(v) else (_ for _ in ()).throw(_Fail(msg)),
    "and": lambda *a: next((x for x in a if not _truth(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truth(x)), a[-1]),
    "not": lambda v: not _truth(v),
    "eq": _eq,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "lt": lambda a, b: a < b,
    "ge": lambda a, b: a >= b,
    "le": lambda a, b: a <= b,
    "int": _num,
    "int64": _num,
    "mul": lambda *a: _product(_num(x) for x in a),
    "add": lambda *a: sum(_num(x) for x in a),
    "toString": _str,
    "b64enc": lambda s: base64.b64encode(_str(s).encode()).decode(),
    "b64dec": lambda s: base64.b64decode(s).decode(),
    "sha256sum": lambda s: hashlib.sha256(_str(s).encode()).hexdigest(),
    "randAlphaNum": lambda n: "".join(random.SystemRandom().choice(
        string.ascii_letters + string.digits) for _ in range(n)),
    "dict": lambda *a: {a[i]: a[i + 1] for i in range(0, len(a), 2)},
    "list": lambda *a: list(a),
    "index": lambda v, *keys: _walk(v, keys),
    "empty": lambda v: not _truth(v),
    "hasKey": lambda d, k: k in d,
}


def render_chart(chart_dir, values=None, release="shoal", namespace="shoal"):
    """The chart's YAML documents (list of dicts)."""
    return Renderer(chart_dir, values, release, namespace).documents()


def fail_message(chart_dir, values):
    """The message of the chart's `fail` for these values, or None."""
    try:
        render_chart(chart_dir, values)
    except _Fail as e:
        return str(e)
    return None
