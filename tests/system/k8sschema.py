"""Offline schema check of Kubernetes objects against the typed models of
the Kubernetes Python client (Debian's python3-kubernetes): every field
name must exist in its type, every value must have the field's type, and
required fields must be present. This is what `kubectl apply --validate`
would ask the API server's OpenAPI schema, done without a cluster; kubectl
itself can only decode objects offline (`--local`)."""

import inspect
import re

from kubernetes import client

_REQUIRED = {}


def _model(name):
    cls = getattr(client, name, None)
    if cls is None or not hasattr(cls, "openapi_types"):
        return None
    return cls


def _required(cls):
    if cls not in _REQUIRED:
        src = inspect.getsource(cls)
        _REQUIRED[cls] = set(re.findall(r"client_side_validation and (\w+) is None", src))
    return _REQUIRED[cls]


def model_for(api_version, kind):
    """The model class for apiVersion/kind ("apps/v1", "DaemonSet"), or None."""
    version = api_version.rpartition("/")[2]
    return _model(version.capitalize() + kind)


def _check(value, type_name, path, errors):
    if value is None:
        return
    if type_name.startswith("list["):
        if not isinstance(value, list):
            errors.append("%s: expected a list, got %r" % (path, value))
            return
        for i, v in enumerate(value):
            _check(v, type_name[5:-1], "%s[%d]" % (path, i), errors)
        return
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            errors.append("%s: expected a map, got %r" % (path, value))
            return
        inner = type_name[5:-1].split(", ", 1)[1]
        for k, v in value.items():
            _check(v, inner, "%s.%s" % (path, k), errors)
        return
    if type_name == "str":
        # Quantities (resources) may be written as numbers.
        quantity = re.search(r"\.(limits|requests|capacity|hard)\.", path + ".")
        if not isinstance(value, str) and not (quantity and isinstance(value, (int, float))
                                               and not isinstance(value, bool)):
            errors.append("%s: expected a string, got %r" % (path, value))
        return
    if type_name == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append("%s: expected an integer, got %r" % (path, value))
        return
    if type_name == "bool":
        if not isinstance(value, bool):
            errors.append("%s: expected true or false, got %r" % (path, value))
        return
    if type_name == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append("%s: expected a number, got %r" % (path, value))
        return
    if type_name in ("object", "datetime", "date"):
        return
    cls = _model(type_name)
    if cls is None:
        errors.append("%s: no model %s to check against" % (path, type_name))
        return
    if not isinstance(value, dict):
        errors.append("%s: expected an object (%s), got %r" % (path, type_name, value))
        return
    by_json = {j: a for a, j in cls.attribute_map.items()}
    for k, v in value.items():
        attr = by_json.get(k)
        if attr is None:
            errors.append("%s.%s: unknown field in %s" % (path, k, type_name))
            continue
        _check(v, cls.openapi_types[attr], "%s.%s" % (path, k), errors)
    for attr in _required(cls):
        if value.get(cls.attribute_map[attr]) is None:
            errors.append("%s.%s: required in %s" % (path, cls.attribute_map[attr], type_name))


def validate(obj):
    """Errors (list of strings) for one object; None when its kind has no
    model here (custom resources)."""
    cls = model_for(obj.get("apiVersion", ""), obj.get("kind", ""))
    if cls is None:
        return None
    errors = []
    name = "%s/%s" % (obj.get("kind"), (obj.get("metadata") or {}).get("name"))
    _check(obj, cls.__name__, name, errors)
    return errors
