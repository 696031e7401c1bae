"""architecture.svg: the services in columns by how far they sit from the outside, flows as arrows."""

from __future__ import annotations

from html import escape

from offline.topology import Edge, Topology

BOX_W, BOX_H, COL_W, ROW_H, MARGIN, TABLE_ROW = 170, 46, 270, 78, 30, 16
COLOURS = {"external": "#eef2f7", "StatefulSet": "#fdf1dc", "Job": "#eeeeee"}


def columns(topo: Topology) -> dict[str, int]:
    """Longest path from the nodes nothing connects to; clients with no callers sit just left
    of the first server they call, so a worker stands beside the api, not beside the internet."""
    incoming = {n: [e.client for e in topo.edges if e.server == n] for n in topo.nodes}
    outgoing = {n: [e.server for e in topo.edges if e.client == n] for n in topo.nodes}
    column: dict[str, int] = {}

    def depth(node: str, trail: tuple[str, ...] = ()) -> int:
        if node not in column:
            callers = [c for c in incoming[node] if c not in trail]
            column[node] = 1 + max((depth(c, (*trail, node)) for c in callers), default=-1)
        return column[node]

    for node in topo.nodes:
        depth(node)
    for node in topo.nodes:
        external = topo.nodes[node].kind == "external"
        if not incoming[node] and outgoing[node] and not external:
            column[node] = max(0, min(column[s] for s in outgoing[node]) - 1)
    return column


def render_svg(topo: Topology, title: str) -> str:
    column = columns(topo)
    rows: dict[int, list[str]] = {}
    for node in sorted(topo.nodes, key=lambda n: (column[n], n)):
        rows.setdefault(column[node], []).append(node)
    position = {n: (col, i) for col, names in rows.items() for i, n in enumerate(names)}
    width = MARGIN * 2 + COL_W * (max(rows, default=0)) + BOX_W
    graph_height = MARGIN + 30 + ROW_H * max((len(v) for v in rows.values()), default=1)
    height = graph_height + 30 + TABLE_ROW * ((len(topo.edges) + 1) // 2) + MARGIN

    def xy(node: str) -> tuple[int, int]:
        col, row = position[node]
        return MARGIN + col * COL_W, MARGIN + 30 + row * ROW_H

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' markerHeight='7' "
        "orient='auto-start-reverse'><path d='M 0 0 L 10 5 L 0 10 z' fill='#555'/></marker></defs>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{MARGIN}" y="{MARGIN + 4}" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    pairs: dict[tuple[str, str], list[Edge]] = {}
    for edge in topo.edges:
        pairs.setdefault((edge.client, edge.server), []).append(edge)
    for (client, server), edges in pairs.items():
        (x1, y1), (x2, y2) = xy(client), xy(server)
        start = (x1 + BOX_W, y1 + BOX_H / 2)
        end = (x2, y2 + BOX_H / 2)
        if x2 <= x1:  # same or earlier column: leave from the bottom, enter from the bottom
            start, end = (x1 + BOX_W / 2, y1 + BOX_H), (x2 + BOX_W / 2, y2 + BOX_H)
        tls = all(e.tls for e in edges)
        colour = "#2e7d32" if tls else "#c62828"
        dash = "" if tls else ' stroke-dasharray="5,3"'
        ports = ",".join(str(p) for e in edges for p in e.ports)
        detail = "; ".join(e.label for e in edges)
        out.append(
            f'<line x1="{start[0]}" y1="{start[1]}" x2="{end[0]}" y2="{end[1]}" stroke="{colour}" '
            f'stroke-width="1.5"{dash} marker-end="url(#arrow)"><title>{escape(client)} to '
            f"{escape(server)}: {escape(detail)}</title></line>"
        )
        lx, ly = start[0] + (end[0] - start[0]) * 0.22, start[1] + (end[1] - start[1]) * 0.22 - 4
        out.append(f'<text x="{lx:.0f}" y="{ly:.0f}" font-size="10" fill="{colour}">{escape(ports)}</text>')
    for name, node in topo.nodes.items():
        x, y = xy(name)
        fill = COLOURS.get(node.kind, "#e3f0fb")
        detail = node.kind if node.kind == "external" else f"{node.kind} x{node.replicas}"
        out += [
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="{fill}" stroke="#37474f"/>',
            f'<text x="{x + BOX_W / 2}" y="{y + 19}" text-anchor="middle" font-weight="bold">{escape(name)}</text>',
            f'<text x="{x + BOX_W / 2}" y="{y + 35}" text-anchor="middle" fill="#455a64">{escape(detail)}</text>',
        ]
    y = graph_height + 10
    out.append(
        f'<text x="{MARGIN}" y="{y}" font-size="11" fill="#455a64">green: TLS; red dashed: plain text (inside '
        "the stack's private network only); numbers: ports. Every flow declared:</text>"
    )
    for i, edge in enumerate(topo.edges):
        x = MARGIN + (i % 2) * (width // 2)
        y = graph_height + 28 + (i // 2) * TABLE_ROW
        colour = "#2e7d32" if edge.tls else "#c62828"
        text = f"{edge.client} -> {edge.server}: {edge.label}"
        out.append(f'<text x="{x}" y="{y}" font-size="11" fill="{colour}">{escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
