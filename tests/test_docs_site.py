"""The API reference site builds in strict mode, and what it shows is what the code has.

A renamed function, a parameter documented under a name the signature lacks,
or a link to a page that is gone makes ``mkdocs build --strict`` fail, and so
this file. The second half holds every public callable to a numpydoc
``Parameters`` section that names each of its parameters, so a new keyword
cannot arrive undocumented.
"""

from __future__ import annotations

import ast
import html
import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

import seewhy
from seewhy import registry

ROOT = Path(__file__).resolve().parent.parent
_INSTALL = "pip install mkdocs 'mkdocstrings[python]' (both are in seewhy's dev extra)"

#: Public modules whose ``__all__`` is held to numpydoc here and must be on the site.
#: ``seewhy.keras`` and ``seewhy.lightning`` are read from source instead (importing
#: them loads TensorFlow, which crashes after torch, or Lightning): see
#: :func:`test_the_training_callbacks_document_each_parameter`.
DOCUMENTED_MODULES = (
    "seewhy",
    "seewhy.targets",
    "seewhy.viz",
    "seewhy.inputs",
    "seewhy.notebook",
    "seewhy.samples",
    "seewhy.synthetic",
    "seewhy.zoo",
    "seewhy.preprocess",
    "seewhy.explanation",
    "seewhy.loading",
    "seewhy.maps",
    "seewhy.provenance",
    "seewhy.registry",
    "seewhy.metrics",
    "seewhy.metrics.registry",
    "seewhy.audit",
    "seewhy.demo",
    "seewhy.spec",
    "seewhy.backends.capabilities",
    "seewhy.backends.requirements",
    "seewhy.vlm",
)


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config)]
    return subprocess.run(
        [*command, "--site-dir", str(site)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this file the way a contributor builds it."""
    pytest.importorskip("mkdocs", reason=f"the docs site needs mkdocs: {_INSTALL}")
    pytest.importorskip("mkdocstrings_handlers.python", reason=f"needs mkdocstrings: {_INSTALL}")
    out = tmp_path_factory.mktemp("site")
    done = _build(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    assert "WARNING" not in done.stderr, done.stderr
    return out


def _page(site: Path, name: str) -> str:
    return html.unescape((site / name / "index.html").read_text(encoding="utf-8"))


def _section(page: str, anchor: str) -> str:
    """The HTML of one documented object: from its heading to the next object of its level."""
    start = page.index(f'id="{anchor}"')
    level = page.rfind("<h", 0, start)
    tag = page[level : level + 3]
    following = page.find(f'{tag} id="', start)
    return page[start : following if following > 0 else len(page)]


def _documented_names(section: str) -> set[str]:
    """The names in a section's parameter and attribute tables."""
    return set(re.findall(r"<b><code>(\*{0,2}\w+)</code></b>", section))


def test_a_broken_reference_fails_the_strict_build(tmp_path: Path) -> None:
    """The guard itself: a page naming an object that does not exist must not build."""
    pytest.importorskip("mkdocs", reason=f"the docs site needs mkdocs: {_INSTALL}")
    pytest.importorskip("mkdocstrings_handlers.python", reason=f"needs mkdocstrings: {_INSTALL}")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# x\n\n::: seewhy.no_such_function\n")
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: x\nplugins:\n  - mkdocstrings:\n      handlers:\n        python:\n"
        f"          paths: [{ROOT / 'src'}]\n"
    )
    done = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "no_such_function" in done.stdout + done.stderr


def _is_submodule(module: str, name: str) -> bool:
    """Without importing it: ``seewhy.keras`` would load TensorFlow after torch (a crash)."""
    if not hasattr(sys.modules[module], "__path__"):  # a plain module has no submodules
        return False
    return importlib.util.find_spec(f"{module}.{name}") is not None


def test_every_name_of_the_package_is_on_the_site(site: Path) -> None:
    api = _page(site, "api")
    everything = "".join(p.read_text(encoding="utf-8") for p in site.rglob("index.html"))
    for name in seewhy.__all__:
        where = everything if _is_submodule("seewhy", name) else api
        assert f'id="seewhy.{name}' in where, f"seewhy.{name} is not documented on the site"


def test_explain_shows_each_parameter_in_its_table(site: Path) -> None:
    section = _section(_page(site, "api"), "seewhy.explain")
    assert "Parameters:" in section or ">Parameters<" in section
    wanted = {"model", "images", "method", "target", "layer", "score", "batch_size"}
    assert wanted <= _documented_names(section)


def test_every_method_has_a_section_with_its_settings(site: Path) -> None:
    """Each setting is in the method's table, or in that of a base on the page that declares it."""
    page = _page(site, "methods")
    for name in registry.names():
        cls = registry.get(name)
        anchor = f"{cls.__module__}.{cls.__qualname__}"
        assert f'id="{anchor}"' in page, f"method {name!r} ({anchor}) has no section"
        shown: set[str] = set()
        for base in cls.__mro__:
            where = f"{base.__module__}.{base.__qualname__}"
            if f'id="{where}"' in page:
                shown |= _documented_names(_section(page, where))
        missing = set(_parameters(cls)) - shown
        assert not missing, f"{anchor}: settings not on the methods page: {sorted(missing)}"


def test_the_command_line_page_is_each_commands_own_help(site: Path) -> None:
    page = _page(site, "cli")
    assert "seewhy-help" not in page  # every marker was replaced
    for command in ("explain", "layers", "methods", "audit", "evaluate", "sanity", "demo"):
        assert f"usage: seewhy {command}" in page, command


def _parameters(obj: Any) -> list[str]:
    """The names a numpydoc section should list, ``*args``/``**kwargs`` with their stars.

    A class is read through its ``__init__``, as the site shows it (a ``__new__``
    that only checks its arguments is not what the reader calls). An enum is
    called with a value: its members are what a reader needs, under Attributes.
    A protocol is never called: each of its methods carries its own docstring.
    """
    if inspect.isclass(obj) and issubclass(obj, Enum):
        return [member.name for member in obj]
    if inspect.isclass(obj) and getattr(obj, "_is_protocol", False):  # typing's own marker
        return []
    if inspect.isclass(obj) and obj.__init__ is not object.__init__:
        obj = obj.__init__
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # a builtin without a signature
        return []
    stars: dict[inspect._ParameterKind, str] = {
        inspect.Parameter.VAR_POSITIONAL: "*",
        inspect.Parameter.VAR_KEYWORD: "**",
    }
    return [
        stars.get(p.kind, "") + p.name
        for p in signature.parameters.values()
        if p.name not in ("self", "cls")
    ]


_HEADER = re.compile(r"^(\w[\w ]*)\n-{3,}\n", re.MULTILINE)


def _numpydoc_names(doc: str, *sections: str) -> set[str] | None:
    """Names listed in the given numpydoc sections; None when there is no such section."""
    headers = list(_HEADER.finditer(doc))
    found: set[str] | None = None
    for i, header in enumerate(headers):
        if header.group(1) not in sections:
            continue
        end = headers[i + 1].start() if i + 1 < len(headers) else len(doc)
        body = doc[header.end() : end]
        found = found or set()
        for line in body.splitlines():
            if line and not line[0].isspace():
                names = line.split(" : ")[0]
                found.update(n.strip() for n in names.split(","))
    return found


def _public_callables() -> list[tuple[str, Any]]:
    found = []
    for module_name in DOCUMENTED_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if _is_submodule(module_name, name):
                continue
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                continue  # raised, not called: their one parameter is the message
            if inspect.isfunction(obj) or inspect.isclass(obj):
                found.append((f"{module_name}.{name}", obj))
    return found


_CALLABLES = _public_callables()


@pytest.mark.parametrize(("name", "obj"), _CALLABLES, ids=[name for name, _ in _CALLABLES])
def test_every_public_callable_documents_each_parameter(name: str, obj: Any) -> None:
    """numpydoc, as the site renders it: a class may list its fields under Attributes."""
    wanted = _parameters(obj)
    if not wanted:
        return
    doc = inspect.getdoc(obj) or ""
    if inspect.isclass(obj):
        init = obj.__dict__.get("__init__")
        doc += "\n" + ((init is not None and inspect.getdoc(init)) or "")
        documented = _numpydoc_names(doc, "Parameters", "Attributes")
    else:
        documented = _numpydoc_names(doc, "Parameters")
    assert documented is not None, f"{name} has no numpydoc Parameters section"
    missing = [p for p in wanted if p not in documented]
    assert not missing, f"{name}: parameters not documented: {missing}"


def _anchors(obj: Any) -> set[str]:
    """Every id the site may give ``obj``: where it is defined, or any public name of it."""
    found = {f"{obj.__module__}.{obj.__qualname__}"}
    for module_name in DOCUMENTED_MODULES:
        module = sys.modules[module_name]
        for name in module.__all__:
            if not _is_submodule(module_name, name) and getattr(module, name) is obj:
                found.add(f"{module_name}.{name}")
    return found


def test_every_public_callable_has_a_section_on_the_site(site: Path) -> None:
    """A name a page leaves out (a function shadowed by its own submodule's name, say) fails."""
    everything = "".join(p.read_text(encoding="utf-8") for p in site.rglob("index.html"))
    missing = [
        name
        for name, obj in _CALLABLES
        if not any(f'id="{anchor}"' in everything for anchor in _anchors(obj))
    ]
    assert not missing, f"documented in the code but not on the site: {missing}"


def test_docstring_roles_become_links_not_markup(site: Path) -> None:
    """``:func:`require``` in a docstring reads as a link to ``require``, not as raw markup."""
    everything = "".join(p.read_text(encoding="utf-8") for p in site.rglob("index.html"))
    raw = re.findall(r":(?:func|class|meth|mod|data|attr|exc|math):<code>[^<]*</code>", everything)
    assert not raw, f"{len(raw)} roles left as markup, e.g. {raw[:3]}"
    models = _page(site, "models")  # the capabilities module names requirements.require
    assert re.search(r'href="#seewhy\.backends\.requirements\.require"><code>', models)


@pytest.mark.parametrize("module", ["keras", "lightning"])
def test_the_training_callbacks_document_each_parameter(module: str) -> None:
    """Read from source, as the site reads them: importing them loads TensorFlow or Lightning."""
    tree = ast.parse((ROOT / "src" / "seewhy" / f"{module}.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ExplainCallback")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    args = init.args
    wanted = [p.arg for p in (*args.posonlyargs, *args.args, *args.kwonlyargs) if p.arg != "self"]
    wanted += [f"*{args.vararg.arg}"] if args.vararg else []
    wanted += [f"**{args.kwarg.arg}"] if args.kwarg else []
    documented = _numpydoc_names(ast.get_docstring(cls) or "", "Parameters")
    assert documented is not None, f"seewhy.{module}.ExplainCallback has no Parameters section"
    missing = [p for p in wanted if p not in documented]
    assert not missing, f"seewhy.{module}.ExplainCallback: parameters not documented: {missing}"
