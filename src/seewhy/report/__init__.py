"""HTML reports that open from the file system: no server, no internet, no CDN.

Text from the data (file names, class names, reasons) is escaped where the
page is built in Python and set with ``textContent`` where it is built in the
browser; the data rides along as JSON in a ``<script type="application/json">``
block with ``<`` escaped, and a Content-Security-Policy lets only the page's
own script (by hash) run and no request leave the machine.
"""

from __future__ import annotations

from .audit import write_audit_report

__all__ = ["write_audit_report"]
