"""MkDocs hook: the configuration reference, generated from the settings' declarations.

The broker declares each setting once (section, name, default, help) in ``mwlbroker.config``;
this hook renders those declarations into the configuration page at build time, so the reference
cannot drift from the code and a setting added without help fails the strict build. It also brings
files that live outside ``docs/`` into the site without copying them: the mapping file reference
(``mappings/README.md``), the changelog and the screenshot the tests keep up to date.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MARKER = "<!-- settings-reference -->"
"""Where the configuration page wants the generated tables."""

ROOT = Path(__file__).resolve().parents[2]

# Site path -> file in the repository. These stay where their readers (the mapping folder, the
# release notes, the browser test that writes the screenshot) expect them.
BORROWED = {
    "mapping-format.md": ROOT / "mappings" / "README.md",
    "changelog.md": ROOT / "CHANGELOG.md",
    "images/reconcile-page.png": ROOT / "tests" / "golden" / "reconcile-page.png",
}

log = logging.getLogger("mkdocs.plugins.settings_reference")


def format_default(value: Any) -> str:
    """A default as a site administrator would write it, TOML-like; empty values said in words."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "" or value is None:
        return "(empty)"
    if isinstance(value, tuple | list):
        if not value:
            return "(none)"
        return json.dumps([str(item) for item in value], ensure_ascii=False)
    return str(value)  # numbers, strings, and schedules ("every 15m", "cron 30 2 * * *")


def render_settings(settings: Iterable[Any]) -> str:
    """One HTML table per section: key, environment variable, default, help.

    HTML rather than a Markdown table, so the help texts (which hold ``*``, ``|``, ``[[...]]``)
    are shown exactly as declared.
    """
    sections: dict[str, list[Any]] = {}
    for setting in settings:
        sections.setdefault(setting.section, []).append(setting)
    parts: list[str] = []
    for section, members in sections.items():
        parts.append(f"### `[{section}]`\n")
        rows = []
        for setting in members:
            if not setting.help:
                raise ValueError(f"setting {setting.key} has no help text")
            default = f"<code>{html.escape(format_default(setting.default))}</code>"
            if setting.secret:
                default += " (secret: <code>config show</code> masks it)"
            rows.append(
                "<tr>"
                f'<td><code id="{html.escape(setting.key)}">{html.escape(setting.key)}</code></td>'
                f"<td><code>{html.escape(setting.env_var)}</code></td>"
                f"<td>{default}</td>"
                f"<td>{html.escape(setting.help)}</td>"
                "</tr>"
            )
        parts.append(
            "<table>\n<thead><tr><th>Setting</th><th>Environment</th><th>Default</th>"
            "<th>Meaning</th></tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>\n"
        )
    return "\n".join(parts)


def settings_reference() -> str:
    """The generated reference for the settings the installed broker declares."""
    from mwlbroker.config import SETTINGS

    return render_settings(SETTINGS)


def on_files(files: Any, config: Any) -> Any:
    """Add the borrowed files to the site, as if they were under docs/."""
    from mkdocs.structure.files import File

    for src_uri, path in BORROWED.items():
        if files.get_file_from_path(src_uri) is None:
            files.append(File.generated(config, src_uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Put the generated tables where the configuration page asks for them."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, settings_reference())
