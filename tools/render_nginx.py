"""Render deploy/nginx/nginx.conf for a native run (no Docker DNS, no root paths).

The compose file mounts deploy/nginx/nginx.conf as it is. For tests and local
runs the same file is the template: only the blocks between the
`# BEGIN native-*` / `# END native-*` markers (upstream servers resolved by
Docker's DNS, the listen line) and the runtime paths (pid, temp dirs) change,
so every proxy setting the tests exercise is the one that ships.

    python tools/render_nginx.py --upstream 127.0.0.1:8001 --upstream 127.0.0.1:8002 \
        --listen 127.0.0.1:8080 --workdir /tmp/fc-nginx > /tmp/fc-nginx/nginx.conf
    nginx -e stderr -p /tmp/fc-nginx -c /tmp/fc-nginx/nginx.conf
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"

_BLOCK = r"(?P<indent>[ \t]*)# BEGIN native-{tag}\b[^\n]*\n.*?[ \t]*# END native-{tag}[^\n]*\n"


def _replace_block(text: str, tag: str, lines: list[str]) -> str:
    pattern = re.compile(_BLOCK.format(tag=tag), re.S)
    match = pattern.search(text)
    if match is None:
        raise ValueError(f"marker block 'BEGIN native-{tag}' not found in nginx.conf")
    indent = match.group("indent")
    body = "".join(f"{indent}{line}\n" for line in lines)
    return text[: match.start()] + body + text[match.end():]


def render_native(template: str, upstreams: list[str], listen: str, workdir: Path) -> str:
    """The compose nginx.conf with static upstreams, a loopback listen and paths under `workdir`."""
    if not upstreams:
        raise ValueError("at least one upstream host:port is needed")
    text = _replace_block(template, "upstream", [f"server {u} max_fails=1 fail_timeout=5s;" for u in upstreams])
    text = _replace_block(text, "listen", [f"listen {listen};"])
    text = re.sub(r"/tmp/nginx", str(workdir / "nginx"), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", action="append", required=True, help="edge host:port (repeat)")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="address:port nginx listens on")
    parser.add_argument("--workdir", type=Path, required=True, help="directory for pid and temp files")
    parser.add_argument("--template", type=Path, default=NGINX_CONF)
    args = parser.parse_args(argv)
    sys.stdout.write(render_native(args.template.read_text(), args.upstream, args.listen, args.workdir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
