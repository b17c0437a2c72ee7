"""The bar above the tabs: the workspace (a private key kept in the browser), the current
model every tab starts from, and what is running now.

A browser keeps its workspace key in ``gr.BrowserState`` (localStorage, never a URL). On page
load the key — or a fresh one made here with ``secrets`` — binds the browser session to the
workspace's folder (``StudioContext.bind_workspace``), so a reload or a browser restart finds
the same variants, jobs and studies; another browser has another key and sees nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import gradio as gr

from studio.context import WORKSPACE_KEY, StudioContext
from studio.runner import call

# Warn before leaving while a run of this page is going (a run status starts with ▶; leaving
# would stop it). Hand-written: Gradio has no such option. No polling timer: in Gradio 6.31 a
# timer's ticks made Stop miss the running event (seen here), so this is read from the page.
LEAVE_GUARD_JS = """() => {
  if (window.__studioLeaveGuard) return;
  window.__studioLeaveGuard = true;
  window.studioRunning = () => Array.from(document.querySelectorAll('.run-status'))
    .some((el) => (el.innerText || '').trim().startsWith('\\u25b6'));
  // Capture phase: runs before Gradio's own listener, which closes the connection (and so
  // would stop the run even when the user chooses to stay).
  window.addEventListener('beforeunload', (e) => {
    if (!window.studioRunning()) return;
    e.stopImmediatePropagation(); e.preventDefault(); e.returnValue = '';
  }, {capture: true});
}"""
RELOAD_JS = "() => { setTimeout(() => window.location.reload(), 500); }"


@dataclass
class Shell:
    """Components of the bar, and the refreshers tabs register to run when the workspace or
    the current model changes (page load, New workspace, a pick in the bar)."""

    ctx: StudioContext
    workspace: Any = None
    current: Any = None
    hooks: list[tuple[Callable[..., Any], list[Any], list[Any]]] = field(default_factory=list)

    def on_current(self, fn: Callable[..., Any], inputs: list[Any], outputs: list[Any]) -> None:
        """Run ``fn`` after the workspace is bound and whenever the current model changes."""
        self.hooks.append((fn, inputs, outputs))

    def after(self, event: Any) -> None:
        """Refresh the bar once ``event`` (e.g. a training) has finished."""
        def refresh(request: gr.Request):
            return current_update(self.ctx, request)

        event.then(refresh, None, [self.current], api_visibility="private",
                   show_progress="hidden")


def current_update(ctx: StudioContext, request: Any) -> dict[str, Any]:
    """The bar's current-model dropdown: this workspace's variants, the current one picked."""
    current = ctx.current(request)
    return gr.update(choices=ctx.variant_choices(request),
                     value=current.name if current is not None else None)


def browser_secret(ctx: StudioContext) -> str:
    """BrowserState's encryption secret: stable across restarts (derived from the root's
    key), so a stored workspace key stays readable after the server restarts."""
    return hashlib.sha256(ctx._key() + b"browser-state").hexdigest()[:32]


def build_bar(ctx: StudioContext) -> Shell:
    """The bar (create inside ``gr.Blocks``, above the tabs)."""
    shell = Shell(ctx)
    shell.workspace = gr.BrowserState(None, storage_key="optimization-studio-workspace",
                                      secret=browser_secret(ctx))
    with gr.Row(equal_height=True, elem_id="studio-bar"):
        shell.current = gr.Dropdown(
            [], label="Current model (every tab starts from it)", scale=4,
            elem_id="current-model", interactive=True)
        with gr.Column(scale=2, min_width=200):
            rename_box = gr.Textbox(label="Rename the current model (Enter; empty: the "
                                    "derived name)", max_length=60, elem_id="rename-model",
                                    max_lines=1)
        with gr.Column(scale=2, min_width=220):
            with gr.Accordion("Workspace", open=False, elem_id="workspace-box"):
                gr.Markdown("Your work is kept on the server under a private key stored in "
                            "this browser. Keep the key to open this workspace from another "
                            "browser; it expires after "
                            f"{ctx.session_ttl_hours:g} h without use.")
                key_box = gr.Textbox(label="Workspace key", type="password",
                                     elem_id="workspace-key")
                with gr.Row():
                    open_btn = gr.Button("Open workspace", size="sm")
                    new_btn = gr.Button("New workspace", size="sm", elem_id="new-workspace")
    shell.key_box, shell.open_btn, shell.new_btn = key_box, open_btn, new_btn
    shell.rename_box = rename_box
    return shell


def wire(shell: Shell, demo: Any, tabs: Any) -> None:
    """Events of the bar: bind on load, pick the current model, new/open workspace."""
    ctx = shell.ctx

    def on_bind(key: Any, request: gr.Request):
        key = ctx.bind_workspace(request, key)
        return key, key, current_update(ctx, request)

    def on_pick(run_id: str, request: gr.Request) -> None:
        if run_id:
            call(lambda: ctx.set_current(request, run_id))

    def on_rename(name: str, run_id: str, request: gr.Request):
        if not run_id:
            raise gr.Error("No current model yet: train or upload one first.")
        call(lambda: ctx.rename(request, run_id, name))
        return "", current_update(ctx, request)

    def on_new(request: gr.Request):
        return ctx.bind_workspace(request, None)

    def on_open(key: str, request: gr.Request):
        key = (key or "").strip()
        if not WORKSPACE_KEY.match(key):
            raise gr.Error("Workspace key: not a key this studio made (it starts with "
                           "'ws1-' and has 47 characters).")
        return ctx.bind_workspace(request, key)

    bound = demo.load(on_bind, [shell.workspace], [shell.workspace, shell.key_box,
                                                   shell.current], api_visibility="private")
    picked = shell.current.input(on_pick, [shell.current], None, api_visibility="private")
    renamed = shell.rename_box.submit(on_rename, [shell.rename_box, shell.current],
                                      [shell.rename_box, shell.current], api_name="rename")
    for fn, inputs, outputs in shell.hooks:
        for event in (bound, picked, renamed):
            event.then(fn, inputs, outputs, api_visibility="private")
    demo.load(None, None, None, js=LEAVE_GUARD_JS)
    def on_tab(request: gr.Request):
        return current_update(ctx, request)

    tabs.select(on_tab, None, [shell.current],
                api_visibility="private", show_progress="hidden")
    shell.new_btn.click(on_new, None, [shell.workspace], api_visibility="private").then(
        None, None, None, js=RELOAD_JS)
    shell.open_btn.click(on_open, [shell.key_box], [shell.workspace],
                         api_visibility="private").success(None, None, None, js=RELOAD_JS)
