// The pose editor as a plain DOM component: toolbar, canvas (image behind, pose on top), status line.
// No ComfyUI import: pose_editor.js mounts it in a node; tests mount it in a plain page.
//
// Its value is the text the node saves: "" while the user has not edited (the node then outputs its pose
// input unchanged), else the edited pose as OpenPose JSON. Edits are kept when the input changes, until
// "Reset to input".
//
// Keyboard focus sits on <input> elements only (a hidden read-only text box for the keys, <input type=button>
// for the buttons). ComfyUI's front end leaves keys typed into an input alone: its change tracker (which
// listens on window in the capture phase, before any handler here, and would undo/redo the whole graph on
// Ctrl+Z/Ctrl+Y), its shortcuts (N, M, R, ...; Del goes to the canvas) and LiteGraph's canvas all check for
// an INPUT or TEXTAREA. A focused <div> would get none of that, whatever it stops.
import { drawPose } from "./pose_draw.js";
import { BODY_POINTS, PoseDocument, emptyFrame, hitTest, isHidden, isPresent, parsePose, serialisePose }
  from "./pose_model.js";

const HINT = "Drag joints. Click: select. Del: delete point, H: hide/show, R: restore, N: add person, "
  + "X: remove person, M: mirror, arrows: nudge, Ctrl+Z / Ctrl+Y: undo / redo.";
const STYLE = `
.masactrl-pose-editor { display: flex; flex-direction: column; gap: 4px; width: 100%; height: 100%;
  box-sizing: border-box; font: 12px sans-serif; color: #ddd; outline: none; min-height: 0; }
.masactrl-pose-editor:focus-within .mpe-view { box-shadow: 0 0 0 1px #6af; }
.masactrl-pose-editor .mpe-bar { display: flex; flex-wrap: wrap; gap: 3px; }
.masactrl-pose-editor input[type=button], .masactrl-pose-editor select { font: inherit; padding: 2px 6px;
  color: #ddd; background: #333; border: 1px solid #555; border-radius: 4px; cursor: pointer; }
.masactrl-pose-editor input[type=button]:disabled { opacity: 0.4; cursor: default; }
.masactrl-pose-editor .mpe-view { flex: 1; min-height: 120px; position: relative; background: #111; }
.masactrl-pose-editor canvas { position: absolute; inset: 0; width: 100%; height: 100%; touch-action: none; }
.masactrl-pose-editor .mpe-keys { position: absolute; left: 0; top: 0; width: 1px; height: 1px; padding: 0;
  border: 0; opacity: 0; pointer-events: none; }
.masactrl-pose-editor .mpe-status { min-height: 1.3em; line-height: 1.3em; white-space: normal; }
.masactrl-pose-editor .mpe-status.error { color: #f88; }
.masactrl-pose-editor .mpe-status.notice { color: #fd6; }`;

function el(tag, props = {}, parent = null) {
  const node = Object.assign(document.createElement(tag), props);
  parent?.append(node);
  return node;
}

export class PoseEditorUI {
  // onChange(value, { edit }): after every change of the value; edit is true for the user's own changes (not for
  // loading saved text or following the image size), which the host may record in its undo history.
  constructor(root, { onChange = () => {}, pointRadius = 5 } = {}) {
    if (!document.getElementById("masactrl-pose-editor-style")) {
      el("style", { id: "masactrl-pose-editor-style", textContent: STYLE }, document.head);
    }
    this.root = root;
    this.onChange = onChange;
    this.pointRadius = pointRadius;
    this.input = null;
    this.canvasSize = null;
    this.edited = false;
    this.background = null;
    this.selected = null;
    this.selectedPerson = null;
    this.drag = null;
    this.doc = new PoseDocument([emptyFrame()]);
    this.build();
    this.setStatus("");
  }

  build() {
    const root = this.root;
    root.classList.add("masactrl-pose-editor");
    root.tabIndex = -1;  // a click on a bare part lands here and is passed on to the key box (focusin below)
    const bar = el("div", { className: "mpe-bar" }, root);
    const button = (action, text, title) => {
      const b = el("input", { type: "button", value: text, title }, bar);
      b.dataset.action = action;
      b.addEventListener("click", () => { this[action](); this.focus(); });
      return b;
    };
    this.buttons = {
      addPerson: button("addPerson", "+ Person", "Add a person (N)"),
      removePerson: button("removePerson", "- Person", "Remove the selected person (X)"),
      deletePoint: button("deletePoint", "Delete", "Delete the selected point (Del)"),
      toggleHidden: button("toggleHidden", "Hide", "Hide or show the selected point (H)"),
      restorePoint: button("restorePoint", "Restore", "Restore the point chosen on the right, or the selected hidden point (R)"),
    };
    this.restoreChoice = el("select", { title: "Missing or hidden points of the selected person" }, bar);
    Object.assign(this.buttons, {
      mirror: button("mirror", "Mirror", "Mirror the selected person left-right (M)"),
      undo: button("undo", "Undo", "Undo (Ctrl+Z)"),
      redo: button("redo", "Redo", "Redo (Ctrl+Y, Ctrl+Shift+Z)"),
      reset: button("reset", "Reset to input", "Drop your edits and show the pose input again"),
    });
    this.frameChoice = el("select", { title: "Which image of the batch to edit" }, bar);
    this.frameChoice.addEventListener("change", () => {
      this.doc.frameIndex = Number(this.frameChoice.value);
      this.select(null);
      this.focus();  // a focused <select> is no input to the front end: Ctrl+Z there would undo the graph
    });
    this.restoreChoice.addEventListener("change", () => this.focus());
    const view = el("div", { className: "mpe-view" }, root);
    this.canvas = el("canvas", {}, view);
    this.keys = el("input", { type: "text", readOnly: true, className: "mpe-keys", autocomplete: "off" }, view);
    this.keys.setAttribute("aria-label", `Pose editor. ${HINT}`);
    this.keys.setAttribute("inputmode", "none");  // no on-screen keyboard on touch screens
    this.status = el("div", { className: "mpe-status" }, root);
    this.canvas.addEventListener("pointerdown", (e) => this.pointerDown(e));
    this.canvas.addEventListener("pointermove", (e) => this.pointerMove(e));
    this.canvas.addEventListener("pointerup", (e) => this.pointerUp(e));
    this.canvas.addEventListener("pointercancel", (e) => this.pointerUp(e));
    root.addEventListener("keydown", (e) => this.keyDown(e));
    root.addEventListener("focusin", (e) => { if (e.target === root) this.focus(); });
    new ResizeObserver(() => this.render()).observe(view);
  }

  // The keys' box takes the focus; no scrolling, as ComfyUI places the widget itself.
  focus() {
    this.keys.focus({ preventScroll: true });
  }

  // ---- state in and out

  get value() {
    return this.edited ? JSON.stringify(serialisePose(this.doc.frames)) : "";
  }

  // The saved text of the node. Malformed text: a clear message and an empty pose, never an exception.
  load(text) {
    this.selected = this.selectedPerson = null;
    if (!text || !String(text).trim()) {
      this.edited = false;
      this.doc = new PoseDocument(this.input ?? [this.blankFrame()]);
      this.setStatus("");
    } else {
      try {
        this.doc = new PoseDocument(parsePose(text));
        this.edited = true;
        this.setStatus("");
      } catch (error) {
        this.doc = new PoseDocument([this.blankFrame()]);
        this.edited = true;
        this.setStatus(`The saved pose could not be read (${error.message}); showing an empty pose. Edit it, `
          + "or press Reset to input to use the pose input.", "error");
        this.onChange(this.value);
      }
    }
    this.fitCanvas();
    this.render();
  }

  // What the node received in its last run: the input pose (frames or null), the background image URL and
  // the canvas size of the image ([w, h] or null).
  setInput(frames, { background = null, canvas = null } = {}) {
    const changed = this.input !== null && JSON.stringify(this.input) !== JSON.stringify(frames);
    this.input = frames;
    this.canvasSize = canvas && canvas[0] ? canvas : null;
    if (!this.edited) {
      this.doc = new PoseDocument(frames ?? [this.blankFrame()]);
      this.selected = this.selectedPerson = null;
    } else if (changed) {
      this.setStatus("The pose input changed; your edits are kept. Press Reset to input to start from the new pose.",
        "notice");
    }
    if (this.fitCanvas() && this.edited) this.onChange(this.value);
    if (background) {
      const image = new Image();
      image.onload = () => { this.background = image; this.render(); };
      image.src = background;
    } else {
      this.background = null;
    }
    this.render();
  }

  blankFrame() {
    return emptyFrame(...(this.canvasSize ?? [512, 512]));
  }

  // The canvas follows the image: returns whether the pose had to be scaled.
  fitCanvas() {
    if (!this.canvasSize) return false;
    const [w, h] = this.canvasSize;
    if (this.doc.frames.every((f) => f.width === w && f.height === h)) return false;
    this.doc.setCanvas(w, h);
    return true;
  }

  changed() {
    this.edited = true;
    if (this.status.classList.contains("error")) this.setStatus("");
    this.render();
    this.onChange(this.value, { edit: true });
  }

  setStatus(text, kind = "") {
    this.status.textContent = text || HINT;
    this.status.className = `mpe-status ${kind}`;
  }

  // ---- actions (buttons and keys)

  select(hit) {
    this.selected = hit ? { person: hit.person, part: hit.part, index: hit.index } : null;
    if (hit) this.selectedPerson = hit.person;
    else if (hit === null) this.selectedPerson = null;
    this.render();
  }

  selectedPoint() {
    const s = this.selected;
    return s && this.doc.frame.people[s.person]?.[s.part]?.[s.index] ? s : null;
  }

  addPerson() {
    const index = this.doc.addPerson();
    this.selected = null;
    this.selectedPerson = index;
    this.changed();
  }

  removePerson() {
    if (this.selectedPerson === null || !this.doc.frame.people[this.selectedPerson]) return;
    this.doc.removePerson(this.selectedPerson);
    this.selected = this.selectedPerson = null;
    this.changed();
  }

  deletePoint() {
    const s = this.selectedPoint();
    if (!s) return;
    this.doc.deletePoint(s.person, s.part, s.index);
    this.selected = null;
    this.changed();
  }

  toggleHidden() {
    const s = this.selectedPoint();
    if (!s) return;
    const point = this.doc.point(s.person, s.part, s.index);
    this.doc.setHidden(s.person, s.part, s.index, isPresent(point));
    this.changed();
  }

  restorePoint() {
    const s = this.selectedPoint();
    if (s && isHidden(this.doc.point(s.person, s.part, s.index))) {
      this.doc.restorePoint(s.person, s.part, s.index);
    } else if (this.selectedPerson !== null && this.restoreChoice.value !== "") {
      const index = Number(this.restoreChoice.value);
      this.doc.restorePoint(this.selectedPerson, "body", index);
      this.selected = { person: this.selectedPerson, part: "body", index };
    } else {
      return;
    }
    this.changed();
  }

  mirror() {
    if (this.selectedPerson === null || !this.doc.frame.people[this.selectedPerson]) return;
    this.doc.mirrorPerson(this.selectedPerson);
    this.selected = null;
    this.changed();
  }

  undo() {
    if (this.doc.undo()) { this.selected = null; this.changed(); }
  }

  redo() {
    if (this.doc.redo()) { this.selected = null; this.changed(); }
  }

  reset() {
    this.edited = false;
    this.doc = new PoseDocument(this.input ?? [this.blankFrame()]);
    this.fitCanvas();
    this.selected = this.selectedPerson = null;
    this.setStatus(this.input ? "" : "No pose input yet: run the workflow once to show it.", this.input ? "" : "notice");
    this.render();
    this.onChange(this.value, { edit: true });
  }

  nudge(dx, dy) {
    const s = this.selectedPoint();
    if (!s) return;
    const [x, y] = this.doc.point(s.person, s.part, s.index);
    this.doc.checkpoint();
    this.doc.movePoint(s.person, s.part, s.index, x + dx, y + dy);
    this.changed();
  }

  keyDown(e) {
    const ctrl = e.ctrlKey || e.metaKey, key = e.key.toLowerCase(), step = e.shiftKey ? 10 : 1;
    const actions = {
      z: ctrl && (() => (e.shiftKey ? this.redo() : this.undo())),
      y: ctrl && (() => this.redo()),
      delete: !ctrl && (() => (e.shiftKey ? this.removePerson() : this.deletePoint())),
      backspace: !ctrl && (() => this.deletePoint()),
      h: !ctrl && (() => this.toggleHidden()),
      r: !ctrl && (() => this.restorePoint()),
      n: !ctrl && (() => this.addPerson()),
      x: !ctrl && (() => this.removePerson()),
      m: !ctrl && (() => this.mirror()),
      escape: () => this.select(null),
      arrowleft: () => this.nudge(-step, 0),
      arrowright: () => this.nudge(step, 0),
      arrowup: () => this.nudge(0, -step),
      arrowdown: () => this.nudge(0, step),
    };
    const action = actions[key];
    if (!action) return;
    // Handled here only; bubbling listeners (page shortcuts) never see it. Capturing ones do: see the top.
    e.preventDefault();
    e.stopPropagation();
    action();
  }

  // ---- pointer

  toFrame(e) {
    const rect = this.canvas.getBoundingClientRect(), v = this.view;
    const sx = rect.width / this.canvas.clientWidth || 1;  // ComfyUI zooms the node with a CSS transform
    return [((e.clientX - rect.left) / sx - v.ox) / v.scale, ((e.clientY - rect.top) / sx - v.oy) / v.scale];
  }

  // Where a point is on the screen (client coordinates): for tests and tools.
  screenPoint(person, part, index) {
    const p = this.doc.point(person, part, index), rect = this.canvas.getBoundingClientRect(), v = this.view;
    const sx = rect.width / this.canvas.clientWidth || 1;
    return { x: rect.left + (v.ox + p[0] * v.scale) * sx, y: rect.top + (v.oy + p[1] * v.scale) * sx };
  }

  pointerDown(e) {
    this.focus();
    const [x, y] = this.toFrame(e);
    const hit = hitTest(this.doc.frame, x, y, (this.pointRadius + 5) / this.view.scale);
    this.select(hit);
    if (hit) {
      this.drag = { hit, moved: false };
      this.canvas.setPointerCapture(e.pointerId);
    }
    e.preventDefault();
    e.stopPropagation();
  }

  pointerMove(e) {
    if (!this.drag) return;
    const [x, y] = this.toFrame(e), { hit } = this.drag;
    if (!this.drag.moved) this.doc.checkpoint();
    this.drag.moved = true;
    this.doc.movePoint(hit.person, hit.part, hit.index, x, y);
    this.render();
    e.stopPropagation();
  }

  pointerUp(e) {
    if (!this.drag) return;
    const moved = this.drag.moved;
    this.drag = null;
    if (this.canvas.hasPointerCapture(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    if (moved) this.changed();
  }

  // ---- drawing

  render() {
    const frame = this.doc.frame, canvas = this.canvas, ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 1, h = canvas.clientHeight || 1;
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      [canvas.width, canvas.height] = [Math.round(w * ratio), Math.round(h * ratio)];
    }
    const scale = Math.min(w / frame.width, h / frame.height);
    this.view = { scale, ox: (w - frame.width * scale) / 2, oy: (h - frame.height * scale) / 2 };
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.translate(this.view.ox, this.view.oy);
    ctx.scale(scale, scale);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, frame.width, frame.height);
    if (this.background) {
      ctx.globalAlpha = 0.6;
      ctx.drawImage(this.background, 0, 0, frame.width, frame.height);
      ctx.globalAlpha = 1;
    }
    // OpenPose's own sizes, or more where the image is shrunk: points pointRadius and limbs 2 screen px at least
    drawPose(ctx, frame, { pointRadius: Math.max(4, this.pointRadius / scale), limbWidth: Math.max(4, 2 / scale),
      showHidden: true, selected: this.selected, selectedPerson: this.selectedPerson });
    this.updateControls();
  }

  updateControls() {
    const s = this.selectedPoint(), person = this.selectedPerson !== null && this.doc.frame.people[this.selectedPerson];
    const b = this.buttons;
    b.removePerson.disabled = b.mirror.disabled = !person;
    b.deletePoint.disabled = b.toggleHidden.disabled = !s;
    b.toggleHidden.value = s && !isPresent(this.doc.point(s.person, s.part, s.index)) ? "Show" : "Hide";
    b.undo.disabled = !this.doc.canUndo;
    b.redo.disabled = !this.doc.canRedo;
    b.reset.disabled = !this.edited;
    const missing = person ? person.body.map((p, i) => [p, i]).filter(([p]) => !isPresent(p)) : [];
    this.restoreChoice.replaceChildren(...missing.map(([p, i]) => el("option", {
      value: String(i), textContent: `${BODY_POINTS[i].replace("_", " ")}${isHidden(p) ? " (hidden)" : ""}` })));
    this.restoreChoice.disabled = !missing.length;
    b.restorePoint.disabled = !missing.length && !(s && isHidden(this.doc.point(s.person, s.part, s.index)));
    const frames = this.doc.frames.length;
    this.frameChoice.style.display = frames > 1 ? "" : "none";
    if (this.frameChoice.options.length !== frames) {
      this.frameChoice.replaceChildren(...this.doc.frames.map((_, i) => el("option", {
        value: String(i), textContent: `image ${i + 1} of ${frames}` })));
    }
    this.frameChoice.value = String(this.doc.frameIndex);
  }
}
