"""The Agents panel: every agent in a line-API table (only visible rows render), sortable, filterable."""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Static

from agentperf_tui.engine.agent_order import FILTERS, SORT_KEYS, SORT_LABELS, order_rows
from agentperf_tui.engine.frames import AgentRows
from agentperf_tui.tui import format as fmt

COLUMNS = (("agent", 6), ("state", 9), ("in state", 9), ("turn", 8), ("ctx tok", 8), ("TTFT s", 7), ("tok/s", 7),
           ("avg tok/s", 10))  # (title, cell width): the header below and _build() use the same widths
TIER_CELL = 3  # " ✓ " under "T1 "


class AgentTable(ScrollView, can_focus=True):
    """Line-API table over the frame's columnar AgentRows."""

    COMPONENT_CLASSES = {"agents--pass", "agents--fail", "agents--dim", "agents--decode", "agents--tool",
                         "agents--stall"}
    DEFAULT_CSS = """
    AgentTable { height: 1fr; }
    AgentTable > .agents--pass { color: $success; }
    AgentTable > .agents--fail { color: $error; text-style: bold; }
    AgentTable > .agents--dim { color: $text-muted; }
    AgentTable > .agents--decode { color: $accent; }
    AgentTable > .agents--tool { color: $warning; }
    AgentTable > .agents--stall { color: $error; text-style: bold reverse; }
    """

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.rows = AgentRows()
        self.order: list[int] = []
        self.tier_names: tuple[str, ...] = ()
        self.sort_key = "id"
        self.reverse = False
        self.filter_mode = "all"
        self._cache: dict[tuple, Strip] = {}
        self._line_keys: dict[int, tuple | None] = {}  # table line -> the row key it was last drawn with

    def set_rows(self, rows: AgentRows, tier_names: tuple[str, ...]) -> None:
        """New rows: repaint only the visible lines whose content changed (a full repaint of the
        table per frame costs tens of ms at 200x50; most lines show the same agent as before)."""
        full = tier_names != self.tier_names or not self._line_keys
        self.rows = rows
        self.tier_names = tier_names
        self.order = order_rows(rows, self.sort_key, self.reverse, self.filter_mode)
        width = sum(w for _, w in COLUMNS) + TIER_CELL * len(tier_names) + 1
        size = Size(width, len(self.order))
        if self.virtual_size != size:  # a new size means a layout pass; same size only repaints
            self.virtual_size = size
            full = True
        if len(self._cache) > 20_000:
            self._cache.clear()
        if full:
            self._line_keys.clear()
            self.refresh()
            return
        top = self.scroll_offset.y
        for index in range(top, top + self.size.height):
            if self._line_keys.get(index) != self._row_key(index):
                self.refresh_line(index)

    def _row_key(self, index: int) -> tuple | None:
        """What line ``index`` of the table shows (None past the last row): equal keys, same line."""
        if index >= len(self.order):
            return None
        i = self.order[index]
        r = self.rows
        return (r.ids[i], r.states[i], r.turns[i], r.turn_counts[i], r.context_tokens[i], r.last_ttft_s[i],
                r.last_tps[i], r.rolling_tps[i], r.tier_pass[i], int(r.state_s[i] or 0), r.stalled[i])

    def cycle_sort(self) -> str:
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        self.set_rows(self.rows, self.tier_names)
        return self.sort_key

    def toggle_reverse(self) -> bool:
        self.reverse = not self.reverse
        self.set_rows(self.rows, self.tier_names)
        return self.reverse

    def cycle_filter(self) -> str:
        self.filter_mode = FILTERS[(FILTERS.index(self.filter_mode) + 1) % len(FILTERS)]
        self.set_rows(self.rows, self.tier_names)
        return self.filter_mode

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        row_key = self._row_key(index)
        self._line_keys[index] = row_key
        if row_key is None:
            return Strip.blank(width, self.rich_style)
        key = (row_key, scroll_x, width)
        strip = self._cache.get(key)
        if strip is None:
            strip = self._build(self.order[index]).crop(scroll_x, scroll_x + width).extend_cell_length(
                width, self.rich_style)
            self._cache[key] = strip
        return strip

    def _build(self, i: int) -> Strip:
        r = self.rows
        base = self.rich_style
        state = r.states[i]
        if r.stalled[i]:  # a request without progress: not to be mistaken for a long generation
            state, state_style = "STALL", "agents--stall"
        else:
            state_style = {"decode": "agents--decode", "tool": "agents--tool"}.get(state, "agents--dim")
        style = self.get_component_rich_style(state_style)
        cells = [
            (f"{r.ids[i]:>5} ", base),
            (f"{state:<9}", style),
            (f"{fmt.since(r.state_s[i]):>8} ", style if r.stalled[i] else base),
            (f"{r.turns[i]:>3}/{r.turn_counts[i]:<4}", base),
            (f"{fmt.tokens(r.context_tokens[i]):>7} ", base),
            (f"{fmt.num(r.last_ttft_s[i], '.2f'):>6} ", base),
            (f"{fmt.num(r.last_tps[i], '.1f'):>6} ", base),
            (f"{fmt.num(r.rolling_tps[i], '.1f'):>9} ", base),
        ]
        passed = self.get_component_rich_style("agents--pass")
        failed = self.get_component_rich_style("agents--fail")
        dim = self.get_component_rich_style("agents--dim")
        for mark in r.tier_pass[i]:
            if mark is None:
                cells.append((" · ", dim))
            elif mark:
                cells.append((" ✓ ", passed))
            else:
                cells.append((" ✗ ", failed))
        return Strip([Segment(text, style if isinstance(style, Style) else None) for text, style in cells])


class AgentsHeader(Static):
    """Column titles (with units) and the current sort/filter."""

    def show(self, tier_names: tuple[str, ...], sort_key: str, reverse: bool, filter_mode: str, shown: int,
             total: int, stalled: int = 0, refresh_s: float = 0.25) -> None:
        head = (f"{'agent':>5} {'state':<9}{'in state':>8} {'turn':^8}{'ctx tok':>7} {'TTFT s':>6} {'tok/s':>6} "
                f"{'avg tok/s':>9} ") + "".join(f"T{k + 1} " for k in range(len(tier_names)))
        order = (f"sort {SORT_LABELS.get(sort_key, sort_key)}{' (desc)' if reverse else ''} · filter {filter_mode}"
                 f" · {shown}/{total} agents" + (f" · rows every {refresh_s:g} s" if refresh_s > 0.3 else ""))
        key = (head, order, stalled)
        if getattr(self, "_shown", None) != key:
            self._shown = key
            stall = ((f"{stalled} STALLED", "bold reverse red"), "  ") if stalled else ()
            self.update(Text.assemble((head, ""), "\n", *stall,
                                      (f"{order}   o: sort  O: reverse  f: filter", "dim"), no_wrap=True))
