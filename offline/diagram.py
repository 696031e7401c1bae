"""architecture.svg: the services in columns by how far they sit from the outside, flows as arrows.

Lines are routed orthogonally through the gaps between columns and the channels between rows,
never across a box, so a line touches only the two boxes it connects. Each port label sits on
its own line's first stretch, beside the box it leaves, where no other label can be. The legend
lists exactly the line styles the picture uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from offline.topology import Edge, Topology

BOX_W, MIN_BOX_H, MARGIN, TITLE_H = 170, 56, 30, 34
# Exits carry a port label above them, so they sit further apart than entries.
EXIT_GAP, ENTRY_GAP = 15, 9
LANE, TRACK = 10, 8  # spacing of vertical lanes in a column gap, of tracks in a row channel
ARROW_ROOM, LABEL_PAD = 18, 10
PORT_FONT, TABLE_FONT, TABLE_ROW = 10, 11, 16
# Average glyph width of the sans-serif font as a fraction of its size; generous so that
# estimated boxes contain the drawn text.
CHAR_W = 0.62
COLOURS = {"external": "#eef2f7", "StatefulSet": "#fdf1dc", "Job": "#eeeeee"}


@dataclass(frozen=True)
class Style:
    colour: str
    dash: str | None
    meaning: str


# What a line's look says. A plain-text flow from an external client (the internet's HTTP port,
# which redirects to HTTPS, or a Gateway that terminated TLS) is not the stack's private network.
STYLES = {
    "tls": Style("#2e7d32", None, "TLS"),
    "plain-inside": Style("#c62828", "6,3", "plain text, inside the stack's private network"),
    "plain-outside": Style("#ef6c00", "2,3", "plain HTTP from outside the stack"),
}


def style_of(edge: Edge, topo: Topology) -> str:
    if edge.tls:
        return "tls"
    client = topo.nodes.get(edge.client)
    return "plain-outside" if client is not None and client.kind == "external" else "plain-inside"


def text_width(text: str, size: float) -> float:
    return len(text) * size * CHAR_W


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


def order_rows(topo: Topology, column: dict[str, int]) -> dict[int, list[str]]:
    """Nodes per column, ordered so each sits level with the nodes it connects to (barycentre
    sweeps, as layered-graph drawings do): fewer lines cross, and short ones stay short."""
    ncols = max(column.values(), default=0) + 1
    by_col: dict[int, list[str]] = {c: sorted(n for n in topo.nodes if column[n] == c) for c in range(ncols)}
    neighbours = {
        n: {e.server for e in topo.edges if e.client == n} | {e.client for e in topo.edges if e.server == n}
        for n in topo.nodes
    }

    def key(n: str, pos: dict[str, int], before: bool) -> tuple[float, str]:
        c = column[n]
        near = [pos[m] for m in neighbours[n] if (column[m] < c if before else column[m] > c)]
        return (sum(near) / len(near) if near else pos[n], n)

    def sweep(cols: range, before: bool) -> None:
        for c in cols:
            pos = {n: i for names in by_col.values() for i, n in enumerate(names)}
            by_col[c].sort(key=lambda n: key(n, pos, before))

    for _ in range(3):
        sweep(range(1, ncols), before=True)
        sweep(range(ncols - 2, -1, -1), before=False)
    return by_col


@dataclass
class Line:
    """One drawn line: the flows from one client to one server that share a style."""

    client: str
    server: str
    style: str
    edges: list[Edge]
    exit_y: float = 0.0
    entry_y: float = 0.0
    # Lanes (x) in the gap right of the client's column and, when the line must travel along
    # a row channel, in the gap left of the server's column; the channel's y.
    first_lane: float = 0.0
    last_lane: float = 0.0
    channel_y: float | None = None
    points: list[tuple[float, float]] = field(default_factory=list)

    @property
    def ports(self) -> str:
        return ",".join(str(p) for e in self.edges for p in e.ports)


def _lines(topo: Topology) -> list[Line]:
    grouped: dict[tuple[str, str, str], list[Edge]] = {}
    for edge in topo.edges:
        grouped.setdefault((edge.client, edge.server, style_of(edge, topo)), []).append(edge)
    return [Line(c, s, st, edges) for (c, s, st), edges in grouped.items()]


def _spread(count: int, gap: float, top: float, height: float) -> list[float]:
    """``count`` positions ``gap`` apart, centred on a side ``height`` long starting at ``top``."""
    start = top + height / 2 - gap * (count - 1) / 2
    return [start + i * gap for i in range(count)]


def render_svg(topo: Topology, title: str) -> str:
    column = columns(topo)
    lines = _lines(topo)
    ncols = max(column.values(), default=0) + 1
    by_col = order_rows(topo, column)
    row = {n: i for names in by_col.values() for i, n in enumerate(names)}
    nrows = max((len(v) for v in by_col.values()), default=1)

    exits = {n: [ln for ln in lines if ln.client == n] for n in topo.nodes}
    entries = {n: [ln for ln in lines if ln.server == n] for n in topo.nodes}
    box_h = max(
        [MIN_BOX_H]
        + [(len(v) + 1) * EXIT_GAP for v in exits.values()]
        + [(len(v) + 1) * ENTRY_GAP for v in entries.values()]
    )

    def routed(ln: Line) -> bool:
        """Needs a row channel: it skips a column, or goes back to its own or an earlier one."""
        return column[ln.server] != column[ln.client] + 1

    # Row channels: below each row. Each routed line runs below its client's row.
    channel_lines: dict[int, list[Line]] = {}
    for ln in lines:
        if routed(ln):
            channel_lines.setdefault(row[ln.client], []).append(ln)
    row_gap = max([30] + [(len(v) + 1) * TRACK + 8 for v in channel_lines.values()])
    row_h = box_h + row_gap
    top = MARGIN + TITLE_H

    def box_y(node: str) -> float:
        return top + row[node] * row_h

    # Gaps between columns: label room for the exits of the column on the left, then lanes.
    gap_lanes: dict[int, int] = {g: 0 for g in range(-1, ncols)}
    for ln in lines:
        gap_lanes[column[ln.client]] += 1
        if routed(ln):
            gap_lanes[column[ln.server] - 1] += 1
    label_room = {
        g: max([0.0] + [text_width(ln.ports, PORT_FONT) for n in by_col.get(g, []) for ln in exits[n]]) + LABEL_PAD
        for g in range(-1, ncols)
    }
    gap_w = {g: label_room[g] + gap_lanes[g] * LANE + ARROW_ROOM for g in range(-1, ncols)}
    col_x: dict[int, float] = {}
    x = MARGIN + (gap_w[-1] if gap_lanes[-1] else 0)
    for c in range(ncols):
        col_x[c] = x
        x += BOX_W + gap_w[c]
    graph_w = col_x[ncols - 1] + BOX_W + (gap_w[ncols - 1] if gap_lanes[ncols - 1] else 0) + MARGIN

    def box_x(node: str) -> float:
        return col_x[column[node]]

    # Channel tracks, then the y each line heads for after leaving its client.
    for r, members in channel_lines.items():
        members.sort(key=lambda ln: (box_x(ln.server), row[ln.server]))
        base = top + r * row_h + box_h + (row_gap - (len(members) - 1) * TRACK) / 2
        for i, ln in enumerate(members):
            ln.channel_y = base + i * TRACK

    # Entries first (ordered by where each line comes from, so they do not cross at the box),
    # then exits (ordered by where each line is heading).
    def source_y(ln: Line) -> float:
        return ln.channel_y if ln.channel_y is not None else box_y(ln.client) + box_h / 2

    for node, ins in entries.items():
        ins.sort(key=lambda ln: (source_y(ln), box_x(ln.client), ln.style))
        for ln, y in zip(ins, _spread(len(ins), ENTRY_GAP, box_y(node), box_h), strict=True):
            ln.entry_y = y
    for node, outs in exits.items():
        outs.sort(key=lambda ln: (ln.channel_y if ln.channel_y is not None else ln.entry_y, ln.style))
        for ln, y in zip(outs, _spread(len(outs), EXIT_GAP, box_y(node), box_h), strict=True):
            ln.exit_y = y

    # Lanes: a vertical run from ya to yb. Runs going down are laid right to left by where they
    # start, runs going up left to right, which keeps a fan from one box free of crossings.
    runs: dict[int, list[tuple[Line, bool, float, float]]] = {g: [] for g in range(-1, ncols)}
    for ln in lines:
        c1, c2 = column[ln.client], column[ln.server]
        if routed(ln):
            assert ln.channel_y is not None
            runs[c1].append((ln, True, ln.exit_y, ln.channel_y))
            runs[c2 - 1].append((ln, False, ln.channel_y, ln.entry_y))
        else:
            runs[c1].append((ln, True, ln.exit_y, ln.entry_y))
    for g, members in runs.items():
        members.sort(key=lambda r: (r[3] >= r[2], r[2] if r[3] < r[2] else -r[2], r[3]))
        left = (col_x[g] + BOX_W if g >= 0 else MARGIN) + label_room[g]
        for i, (ln, first, _, _) in enumerate(members):
            lane = left + LANE / 2 + i * LANE
            if first:
                ln.first_lane = lane
            else:
                ln.last_lane = lane

    for ln in lines:
        start = (box_x(ln.client) + BOX_W, ln.exit_y)
        end = (box_x(ln.server), ln.entry_y)
        if ln.channel_y is None:
            points = [start, (ln.first_lane, ln.exit_y), (ln.first_lane, ln.entry_y), end]
        else:
            points = [
                start,
                (ln.first_lane, ln.exit_y),
                (ln.first_lane, ln.channel_y),
                (ln.last_lane, ln.channel_y),
                (ln.last_lane, ln.entry_y),
                end,
            ]
        ln.points = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]

    graph_bottom = top + nrows * row_h
    used = [key for key in STYLES if any(ln.style == key for ln in lines)]
    legend_top = graph_bottom + 6
    table_top = legend_top + 18 * len(used) + 24
    rows_text = [(f"{e.client} -> {e.server}: {e.label}", STYLES[style_of(e, topo)]) for e in topo.edges]
    table_col = max([0.0] + [text_width(t, TABLE_FONT) for t, _ in rows_text]) + 30
    width = int(max(graph_w, 2 * MARGIN + 2 * table_col, MARGIN * 2 + 520))
    height = int(table_top + TABLE_ROW * ((len(rows_text) + 1) // 2) + MARGIN)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        "<defs>"
        + "".join(
            f"<marker id='arrow-{key}' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' markerHeight='7' "
            f"orient='auto-start-reverse'><path d='M 0 0 L 10 5 L 0 10 z' fill='{STYLES[key].colour}'/></marker>"
            for key in used
        )
        + "</defs>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{MARGIN}" y="{MARGIN + 4}" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]

    def stroke(key: str) -> str:
        s = STYLES[key]
        return f'stroke="{s.colour}" stroke-width="1.5"' + (f' stroke-dasharray="{s.dash}"' if s.dash else "")

    # One tooltip per client and server, over all their lines: hovering any of them shows every
    # flow between the two.
    pairs: dict[tuple[str, str], list[Line]] = {}
    for ln in lines:
        pairs.setdefault((ln.client, ln.server), []).append(ln)
    for (client, server), drawn in pairs.items():
        detail = "; ".join(e.label for ln in drawn for e in ln.edges)
        out += [f'<g class="pair"><title>{escape(client)} to {escape(server)}: {escape(detail)}</title>']
        for ln in drawn:
            points = " ".join(f"{px:g},{py:g}" for px, py in ln.points)
            label_x, label_y = box_x(ln.client) + BOX_W + 4, ln.exit_y - 3
            out += [
                f'<g class="flow" data-style="{ln.style}">',
                f'<polyline points="{points}" fill="none" {stroke(ln.style)} marker-end="url(#arrow-{ln.style})"/>',
                f'<text class="port" x="{label_x:g}" y="{label_y:g}" font-size="{PORT_FONT}" '
                f'fill="{STYLES[ln.style].colour}">{escape(ln.ports)}</text>',
                "</g>",
            ]
        out.append("</g>")
    for name, node in topo.nodes.items():
        bx, by = box_x(name), box_y(name)
        fill = COLOURS.get(node.kind, "#e3f0fb")
        detail = node.kind if node.kind == "external" else f"{node.kind} x{node.replicas}"
        mid = by + box_h / 2
        out += [
            f'<g class="node" data-name="{escape(name)}">',
            f'<rect x="{bx:g}" y="{by:g}" width="{BOX_W}" height="{box_h:g}" rx="6" fill="{fill}" stroke="#37474f"/>',
            f'<text x="{bx + BOX_W / 2:g}" y="{mid - 3:g}" text-anchor="middle" font-weight="bold">'
            f"{escape(name)}</text>",
            f'<text x="{bx + BOX_W / 2:g}" y="{mid + 13:g}" text-anchor="middle" fill="#455a64">'
            f"{escape(detail)}</text>",
            "</g>",
        ]
    for i, key in enumerate(used):
        y = legend_top + 18 * i + 12
        s = STYLES[key]
        out += [
            f'<g class="legend" data-style="{key}">',
            f'<line x1="{MARGIN}" y1="{y - 4}" x2="{MARGIN + 40}" y2="{y - 4}" {stroke(key)}/>',
            f'<text x="{MARGIN + 50}" y="{y}" font-size="11" fill="#263238">{escape(s.meaning)}</text>',
            "</g>",
        ]
    out.append(
        f'<text x="{MARGIN}" y="{table_top - 8}" font-size="11" fill="#455a64">Numbers beside the lines: ports. '
        "Every flow declared:</text>"
    )
    for i, (text, s) in enumerate(rows_text):
        tx = MARGIN + (i % 2) * table_col
        ty = table_top + 10 + (i // 2) * TABLE_ROW
        out.append(f'<text x="{tx:g}" y="{ty}" font-size="{TABLE_FONT}" fill="{s.colour}">{escape(text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
