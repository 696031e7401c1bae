"""architecture.svg read as a picture: the legend explains every line style, each line's style
says what its flows are, no line crosses a box, and no two texts overlap."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import GATEWAY_ADDRESSES
from rendering import CASES, rendered

from offline import diagram
from offline.engine import run_program
from offline.topology import Edge, Node, Topology
from offline.topology import of as topology_of

SVG = "{http://www.w3.org/2000/svg}"
# Glyph width as a fraction of the font size: sans-serif digits and lower case average about
# 0.55; a little more keeps the estimate on the safe side.
CHAR_FACTOR = 0.6

Box = tuple[float, float, float, float]  # left, top, right, bottom


@dataclass
class Drawn:
    client: str
    server: str
    details: list[str]  # "443 TLS none" per flow on the line
    points: list[tuple[float, float]]
    style: tuple[str, str]  # stroke, dash
    port_label: ET.Element


@dataclass
class Picture:
    boxes: dict[str, Box]
    external: set[str]
    lines: list[Drawn]
    legend: dict[tuple[str, str], str]  # style -> meaning
    texts: list[ET.Element]
    root_font: float


def _style(element: ET.Element) -> tuple[str, str]:
    return element.get("stroke", ""), element.get("stroke-dasharray", "")


def parse(svg_text: str) -> Picture:
    root = ET.fromstring(svg_text)
    boxes: dict[str, Box] = {}
    external: set[str] = set()
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "node":
            rect = g.find(f"{SVG}rect")
            assert rect is not None
            x, y, w, h = (float(rect.get(k, "0")) for k in ("x", "y", "width", "height"))
            name, detail = (t.text or "" for t in g.findall(f"{SVG}text"))
            boxes[name] = (x, y, x + w, y + h)
            if detail == "external":
                external.add(name)
    lines = []
    legend: dict[tuple[str, str], str] = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "pair":
            title = g.find(f"{SVG}title")
            assert title is not None
            found = re.fullmatch(r"(.+) to (.+?): (.+)", title.text or "")
            assert found, title.text
            details = found[3].split("; ")
            claimed: list[str] = []
            for flow in g.findall(f"{SVG}g"):
                polyline, label = flow.find(f"{SVG}polyline"), flow.find(f"{SVG}text")
                assert flow.get("class") == "flow" and polyline is not None and label is not None
                ports = (label.text or "").split(",")
                # The flows this line carries: those of the pair whose ports its label names.
                mine = [d for d in details if set(d.split(" ")[0].split(",")) <= set(ports)]
                claimed += mine
                points = [tuple(map(float, p.split(","))) for p in (polyline.get("points") or "").split()]
                lines.append(Drawn(found[1], found[2], mine, points, _style(polyline), label))  # type: ignore[arg-type]
            assert sorted(claimed) == sorted(details), f"{title.text}: lines carry {claimed}"
        elif g.get("class") == "legend":
            sample, text = g.find(f"{SVG}line"), g.find(f"{SVG}text")
            assert sample is not None and text is not None
            assert _style(sample) not in legend, "two legend entries for one style"
            legend[_style(sample)] = text.text or ""
    return Picture(boxes, external, lines, legend, list(root.iter(f"{SVG}text")), float(root.get("font-size", "12")))


def text_box(text: ET.Element, root_font: float) -> Box:
    size = float(text.get("font-size", root_font))
    width = len(text.text or "") * size * CHAR_FACTOR
    x, y = float(text.get("x", "0")), float(text.get("y", "0"))
    left = {"middle": x - width / 2, "end": x - width}.get(text.get("text-anchor", "start"), x)
    # The baseline is y: ascenders reach about 0.8 of the size above it, descenders 0.2 below.
    return left, y - 0.8 * size, left + width, y + 0.2 * size


def overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def crosses(p: tuple[float, float], q: tuple[float, float], box: Box, inset: float = 0.5) -> bool:
    """Whether segment p-q passes through the inside of ``box`` (Liang-Barsky clipping);
    running along or ending on its border does not count."""
    left, top, right, bottom = box[0] + inset, box[1] + inset, box[2] - inset, box[3] - inset
    (x0, y0), (x1, y1) = p, q
    dx, dy = x1 - x0, y1 - y0
    low, high = 0.0, 1.0
    for edge_p, edge_q in ((-dx, x0 - left), (dx, right - x0), (-dy, y0 - top), (dy, bottom - y0)):
        if edge_p == 0:
            if edge_q < 0:
                return False
            continue
        t = edge_q / edge_p
        if edge_p < 0:
            low = max(low, t)
        else:
            high = min(high, t)
        if low > high:
            return False
    return True


def on_border(point: tuple[float, float], box: Box) -> bool:
    x, y = point
    inside_x, inside_y = box[0] - 0.01 <= x <= box[2] + 0.01, box[1] - 0.01 <= y <= box[3] + 0.01
    return (inside_y and min(abs(x - box[0]), abs(x - box[2])) < 0.01) or (
        inside_x and min(abs(y - box[1]), abs(y - box[3])) < 0.01
    )


@pytest.fixture(scope="module", params=CASES, ids=[f"{s}-{t}" for s, t in CASES])
def picture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Picture:
    stack, target = request.param
    return parse((rendered(tmp_path_factory.getbasetemp() / stack, stack, target).out / "architecture.svg").read_text())


# --- Checks, each usable on any drawing -------------------------------------------------------


def check_legend(pic: Picture) -> None:
    assert pic.boxes and pic.lines and pic.legend, "not a drawing with boxes, lines and a legend"
    used = {line.style for line in pic.lines}
    assert used == set(pic.legend), f"drawn styles {used} but legend {pic.legend}"
    for line in pic.lines:
        meaning = pic.legend[line.style]
        tls = [d.split(" ")[1] == "TLS" for d in line.details]
        # What the line's flows are, from its title, against what its style is said to mean.
        if all(tls):
            assert meaning == "TLS", (line.client, line.server, meaning)
        else:
            assert not any(tls), f"{line.client} -> {line.server} mixes TLS and plain flows in one line"
            assert "plain" in meaning and "TLS" not in meaning.replace("plain", "")
            outside = line.client in pic.external
            assert ("outside" in meaning) == outside and ("inside" in meaning) != outside, (line.client, meaning)


def check_routes(pic: Picture) -> None:
    for line in pic.lines:
        assert len(line.points) >= 2
        assert on_border(line.points[0], pic.boxes[line.client]), (line.client, line.points[0])
        assert on_border(line.points[-1], pic.boxes[line.server]), (line.server, line.points[-1])
        for p, q in itertools.pairwise(line.points):
            for name, box in pic.boxes.items():
                # Not even its own boxes: a line leaves and enters at their border.
                assert not crosses(p, q, box), f"{line.client} -> {line.server}: {p}-{q} crosses {name}"


def check_labels(pic: Picture) -> None:
    boxes = [(t.text, text_box(t, pic.root_font)) for t in pic.texts]
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        assert not overlap(box_a, box_b), f"{a!r} overlaps {b!r}"
    for line in pic.lines:
        label = line.port_label
        assert (label.text or "").split(",") == [p for d in line.details for p in d.split(" ")[0].split(",")]
        box = text_box(label, pic.root_font)
        for name, node in pic.boxes.items():
            assert not overlap(box, node), f"port label {label.text} overlaps box {name}"
        # It sits just above the first stretch of its own line, within that stretch.
        (x0, y0), (x1, _) = line.points[0], line.points[1]
        assert 0 <= y0 - box[3] <= 4 and min(x0, x1) <= box[0] and box[2] <= max(x0, x1), (label.text, box)


# --- The rendered stacks --------------------------------------------------------------------


def test_every_line_style_is_in_the_legend_and_means_what_the_flows_are(picture: Picture) -> None:
    check_legend(picture)
    # The fault this guards against: TLS from the internet drawn as plain text.
    to_edge = [line for line in picture.lines if line.server == "edge" and line.client in picture.external]
    assert any(picture.legend[line.style] == "TLS" and line.details[0].startswith("443 ") for line in to_edge)


def test_no_line_crosses_a_box(picture: Picture) -> None:
    check_routes(picture)


def test_no_two_texts_overlap_and_port_labels_sit_on_their_lines(picture: Picture) -> None:
    check_labels(picture)


def test_lines_and_titles_are_the_topology(tmp_path_factory: pytest.TempPathFactory) -> None:
    result = rendered(tmp_path_factory.getbasetemp() / "dev", "dev", "docker")
    pic = parse((result.out / "architecture.svg").read_text())
    drawn = {(line.client, line.server, d) for line in pic.lines for d in line.details}
    assert drawn == {(e.client, e.server, e.label) for e in result.topology.edges}


# --- Layouts the stacks do not produce today: lines back to an earlier column, across several
# columns, several flows of one style between a pair, and a Gateway -------------------------


def _synthetic() -> Topology:
    topo = Topology()
    for name, kind in [("outside", "external"), ("a", "Deployment"), ("b", "Deployment"), ("c", "StatefulSet")]:
        topo.nodes[name] = Node(name, kind)
    topo.nodes["d"] = Node("d", "Job")
    for edge in [
        Edge("outside", "a", (80,), False, "none"),
        Edge("outside", "a", (443,), True, "none"),
        Edge("outside", "c", (5432,), True, "password"),
        Edge("a", "b", (3001, 3002), False, "jwt"),
        Edge("b", "c", (5432,), True, "password"),
        Edge("c", "a", (9000,), True, "sigv4"),
        Edge("c", "outside", (443,), True, "provider"),
        Edge("d", "c", (5432,), True, "password"),
        Edge("d", "b", (8080,), False, "none"),
    ]:
        topo.add_edge(edge)
    return topo


def test_backward_and_long_lines_route_around_boxes() -> None:
    pic = parse(diagram.render_svg(_synthetic(), "synthetic"))
    check_legend(pic)
    check_routes(pic)
    check_labels(pic)
    assert {(line.client, line.server) for line in pic.lines} >= {("c", "a"), ("c", "outside"), ("outside", "c")}


def test_gateway_exposure_draws_its_plain_http_as_from_outside() -> None:
    deployment = run_program(
        "staging",
        overrides={
            "kubernetes.exposure": "gateway",
            "kubernetes.gatewayName": "public",
            "kubernetes.gatewayNamespace": "gw",
            **GATEWAY_ADDRESSES,
        },
    )
    topo = topology_of(deployment)
    pic = parse(diagram.render_svg(topo, "gateway"))
    check_legend(pic)
    check_routes(pic)
    check_labels(pic)
    gateway = [line for line in pic.lines if line.client == "internet (Gateway)"]
    assert gateway and all(pic.legend[line.style] == "plain HTTP from outside the stack" for line in gateway)


def test_checked_in_pictures_pass_the_same_checks() -> None:
    for stack in ("dev", "prod"):
        pic = parse((Path(__file__).resolve().parent.parent / f"docs/architecture-{stack}.svg").read_text())
        check_legend(pic)
        check_routes(pic)
        check_labels(pic)


def test_a_legend_omits_the_styles_a_drawing_does_not_use() -> None:
    topo = Topology()
    for name in ("client", "server"):
        topo.nodes[name] = Node(name, "Deployment")
    topo.add_edge(Edge("client", "server", (5432,), True, "password"))
    pic = parse(diagram.render_svg(topo, "TLS only"))
    check_legend(pic)
    assert list(pic.legend.values()) == ["TLS"]
