"""saelab.viz.widget_base: what the widgets share. Rows wrap, controls are set in order with
None keeping a value, linked controls are set without their observers answering, and a page
lands whole in a folder made for it."""

from __future__ import annotations

import ipywidgets as ipw
import pytest

from saelab.viz.widget_base import WidgetPanel, row, set_given, write_page


def test_rows_wrap_and_center_only_when_asked():
    a, b = ipw.Button(), ipw.HTML()
    plain, centred = row(a, b), row(a, b, align_items="center")
    assert list(plain.children) == [a, b] and plain.layout.flex_flow == "row wrap"
    assert plain.layout.align_items is None and centred.layout.align_items == "center"


def test_set_given_sets_in_order_and_none_keeps_a_value():
    text, number = ipw.Text(value="old"), ipw.IntText(value=3)
    seen: list[str] = []
    text.observe(lambda change: seen.append(f"text={change['new']}"), names="value")
    number.observe(lambda change: seen.append(f"number={change['new']}"), names="value")
    set_given((text, None), (number, 7))
    set_given((text, "new"), (number, None))
    assert (text.value, number.value) == ("new", 7) and seen == ["number=7", "text=new"]


class Linked(WidgetPanel):
    """Two controls that follow each other, as the explorer's list and id box do."""

    def __init__(self) -> None:
        self.left, self.right = ipw.IntText(), ipw.IntText()
        self.echoes = 0
        self.left.observe(self._on_left, names="value")
        self._assemble([row(self.left, self.right)])

    def _on_left(self, change) -> None:
        if self._syncing:
            return
        self.echoes += 1
        self.right.value = change["new"]


def test_sync_silences_observers_and_always_ends():
    panel = Linked()
    panel.left.value = 1
    assert (panel.right.value, panel.echoes) == (1, 1)
    with panel._sync():
        panel.left.value = 2
    assert (panel.right.value, panel.echoes) == (1, 1)
    with pytest.raises(RuntimeError), panel._sync():
        raise RuntimeError("a failing update")
    panel.left.value = 3
    assert (panel.right.value, panel.echoes) == (3, 2)
    assert isinstance(panel.widget, ipw.VBox)
    assert "application/vnd.jupyter.widget-view+json" in (panel._repr_mimebundle_() or {})


def test_write_page_makes_the_folder_and_returns_the_path(tmp_path):
    path = write_page(tmp_path / "deep" / "er" / "page.html", "<p>hi</p>")
    assert path == tmp_path / "deep" / "er" / "page.html" and path.read_text(encoding="utf-8") == "<p>hi</p>"
    assert [p.name for p in path.parent.iterdir()] == ["page.html"]  # no temporary file left behind
