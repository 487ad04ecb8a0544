#!/usr/bin/env python3
"""Draws docs/architecture.svg: the six servers, what runs where, and the three kinds of traffic.

Standard library only. Run from anywhere: python3 docs/architecture.py
The Mermaid diagram in docs/ARCHITECTURE.md shows the same; keep the two in step.
"""

from pathlib import Path

WIDTH, HEIGHT = 980, 620
CLIENT = "#334155"
RAFT = "#b91c1c"
FORWARD = "#1d4ed8"
ARCHIVE = "#047857"


def box(x, y, w, h, title, lines, fill):
    out = [
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" '
        f'stroke="#1f2937" stroke-width="1.2"/>',
        f'<text x="{x + w / 2}" y="{y + 22}" text-anchor="middle" font-weight="bold">{title}</text>',
    ]
    for i, line in enumerate(lines):
        out.append(
            f'<text x="{x + w / 2}" y="{y + 42 + 16 * i}" text-anchor="middle" '
            f'font-size="12">{line}</text>'
        )
    return out


def arrow(x1, y1, x2, y2, color, dashed=False, both=False):
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    start = f' marker-start="url(#start-{color[1:]})"' if both else ""
    return [
        f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{color}" stroke-width="2"{dash}'
        f' marker-end="url(#end-{color[1:]})"{start}/>'
    ]


def markers():
    out = ["<defs>"]
    for color in (CLIENT, RAFT, FORWARD, ARCHIVE):
        name = color[1:]
        out.append(
            f'<marker id="end-{name}" markerWidth="10" markerHeight="10" refX="9" refY="5" '
            f'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker>'
        )
        out.append(
            f'<marker id="start-{name}" markerWidth="10" markerHeight="10" refX="1" refY="5" '
            f'orient="auto"><path d="M10,0 L0,5 L10,10 z" fill="{color}"/></marker>'
        )
    out.append("</defs>")
    return out


def draw():
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="14">',
        '<rect width="100%" height="100%" fill="#ffffff"/>',
    ]
    svg += markers()
    svg += box(290, 8, 400, 56, "6000 concurrent buyers and viewers",
               ["browsers, API clients: HTTPS to the shop's address"], "#f1f5f9")
    # The floating public address: on one gateway server at a time (keepalived), not a server.
    svg += box(290, 84, 400, 44, "floating address 198.18.0.10 (not a server)",
               [], "#fef9c3")
    svg.append('<text x="490" y="122" text-anchor="middle" font-size="11">'
               'VRRP between servers 4-6: held by one whose /v1/ready answers</text>')
    svg += arrow(490, 64, 490, 84, CLIENT)
    gateways = [(60, "server 4"), (380, "server 5"), (700, "server 6")]
    bottoms = {}
    for i, (x, name) in enumerate(gateways):
        lines = ["gateway: axum public API + shop pages", "learner replica (RocksDB)",
                 "batches purchases to the leader", "+ keepalived (VRRP, ready check)"]
        if i == 0:
            lines.append("+ PostgreSQL (archive primary)")
        if i == 1:
            lines.append("+ PostgreSQL standby")
        height = 42 + 16 * len(lines)
        bottoms[x] = 160 + height
        svg += box(x, 160, 220, height, name, lines, "#dbeafe")
        # The holder (server 6 here) gets the traffic; the others stand by to take the address.
        svg += arrow(490, 128, x + 110, 160, CLIENT, dashed=x != 700)
    voters = [(60, "server 1"), (380, "server 2"), (700, "server 3")]
    for x, name in voters:
        svg += box(x, 390, 220, 84, name,
                   ["voter: openraft + RocksDB", "log, stock, orders, keys"], "#fee2e2")
    # Purchases: gateways to the leader (server 1 here).
    for x, _ in gateways:
        svg += arrow(x + 110, bottoms[x], 170, 390, FORWARD)
    # Raft between voters, and to the gateways (learners).
    svg += arrow(280, 430, 380, 430, RAFT, both=True)
    svg += arrow(600, 430, 700, 430, RAFT, both=True)
    svg.append(f'<path d="M 170 476 V 510 H 810 V 476" fill="none" stroke="{RAFT}" '
               f'stroke-width="2" marker-start="url(#start-{RAFT[1:]})" '
               f'marker-end="url(#end-{RAFT[1:]})"/>')
    for x, _ in gateways:
        svg += arrow(x + 40, 390, x + 40, bottoms[x], RAFT, dashed=True)
    # Archive: the leader to PostgreSQL on server 4.
    svg += arrow(240, 390, 240, bottoms[60], ARCHIVE)
    legend = [
        (CLIENT, "client HTTPS to the address's holder (dashed: standing by)"),
        (FORWARD, "purchases, batched: one Raft entry carries many (reqwest, bincode)"),
        (RAFT, "Raft: the leader replicates to voters (majority) and learners"),
        (ARCHIVE, "confirmed orders, by the leader, in batches, to PostgreSQL (off the purchase path)"),
    ]
    for i, (color, text) in enumerate(legend):
        x = 20 + (i % 2) * 480
        y = 566 + (i // 2) * 22
        svg.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 30}" y2="{y - 4}" stroke="{color}" '
                   f'stroke-width="3"/>')
        svg.append(f'<text x="{x + 38}" y="{y}" font-size="12">{text}</text>')
    svg.append('<text x="20" y="100" font-size="12" fill="#475569">any gateway can go: the</text>')
    svg.append('<text x="20" y="116" font-size="12" fill="#475569">address moves to a ready one '
               'in ~2.5 s</text>')
    svg.append('<text x="20" y="360" font-size="12" fill="#475569">any one voter can go: a '
               'majority of two commits; a new leader in ~2.3 s if it was the leader</text>')
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


if __name__ == "__main__":
    target = Path(__file__).resolve().parent / "architecture.svg"
    target.write_text(draw())
    print(f"wrote {target}")
