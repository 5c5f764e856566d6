// Hides the widgets that matter only with another option of a mode combo (Extend Canvas's mode and fill,
// MasaCtrl's schedule_by) and fits the node's height to what is shown. Which widgets belong to which option is
// declared on the combo in the node's schema (nodes/mode_widgets.py), so this file names no node. A hidden
// widget keeps its value and is still saved with the workflow and sent with the prompt (hiding only changes
// what LiteGraph draws), so saved workflows load as before and switching back shows the old values.
import { app } from "../../scripts/app.js";

const KEY = "masactrl_mode_widgets";

// [combo name, {option: [widget names]}] for each combo of the node definition that declares its widgets.
function modeCombos(nodeData) {
  const inputs = { ...nodeData.input?.required, ...nodeData.input?.optional };
  return Object.entries(inputs)
    .filter(([, spec]) => spec?.[1]?.[KEY])
    .map(([name, spec]) => [name, spec[1][KEY]]);
}

function isLinked(node, widget) {
  return !!node.inputs?.some((input) => input.widget?.name === widget.name && input.link != null);
}

// Front end 1.27 skips a hidden widget when drawing and when computing the node's size, but still gives it its
// height when laying the widgets out (LGraphNode #arrangeWidgets), which leaves a gap and grows the node back on
// the next frame. A height of 0 while hidden (computeSize()[1] + 4 = 0), as the pose editor's stored value has,
// avoids both; the widget's own computeSize, if it had one, comes back when it is shown.
const ZERO_HEIGHT = () => [0, -4];

function setHidden(widget, hidden) {
  widget.hidden = hidden;
  if (hidden) {
    if (!("masactrlComputeSize" in widget)) {
      widget.masactrlComputeSize = Object.hasOwn(widget, "computeSize") ? widget.computeSize : undefined;
    }
    widget.computeSize = ZERO_HEIGHT;
  } else if ("masactrlComputeSize" in widget) {
    if (widget.masactrlComputeSize) widget.computeSize = widget.masactrlComputeSize;
    else delete widget.computeSize;
    delete widget.masactrlComputeSize;
  }
}

function fitHeight(node) {
  const [width, height] = node.computeSize();
  node.setSize([Math.max(node.size[0], width), height]);
  node.setDirtyCanvas(true, true);
}

function showModeWidgets(node, combos) {
  let changed = false;
  for (const [comboName, byOption] of combos) {
    const combo = node.widgets?.find((w) => w.name === comboName);
    if (!combo) continue;
    // A combo fed by a link has no value here: show every option's widgets.
    const shown = isLinked(node, combo) ? null : new Set(byOption[combo.value] ?? []);
    const controlled = new Set(Object.values(byOption).flat());
    for (const widget of node.widgets) {
      if (!controlled.has(widget.name)) continue;
      // A widget fed by a link stays visible: its link would otherwise end on nothing.
      const hidden = shown !== null && !shown.has(widget.name) && !isLinked(node, widget);
      if (!!widget.hidden !== hidden) {
        setHidden(widget, hidden);
        changed = true;
      }
    }
  }
  if (changed) fitHeight(node);
}

// Calls `hook` after whatever `method` the node type had (its own, or another extension's), with the same `this`.
function after(nodeType, method, hook) {
  const original = nodeType.prototype[method];
  nodeType.prototype[method] = function () {
    const result = original?.apply(this, arguments);
    hook.call(this, ...arguments);
    return result;
  };
}

app.registerExtension({
  name: "MasaCtrl.ModeWidgets",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const combos = modeCombos(nodeData);
    if (!combos.length) return;
    const names = new Set(combos.map(([name]) => name));
    after(nodeType, "onNodeCreated", function () { showModeWidgets(this, combos); });
    // A loaded workflow sets the widget values (and the saved size) after the node was created.
    after(nodeType, "onConfigure", function () { showModeWidgets(this, combos); });
    // A user's choice on the canvas (arrows or menu) ends in setValue, which calls onWidgetChanged.
    after(nodeType, "onWidgetChanged", function (name) { if (names.has(name)) showModeWidgets(this, combos); });
    // A widget's socket linked or unlinked: linked widgets are always shown.
    after(nodeType, "onConnectionsChange", function () { showModeWidgets(this, combos); });
  },
});
