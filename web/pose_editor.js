// ComfyUI glue of the pose editor: mounts PoseEditorUI (pose_editor_ui.js) as a DOM widget in the
// "Pose Editor (MasaCtrl)" node. The edited pose lives in the node's pose_json widget (hidden), so it is
// saved with the workflow and sent with the prompt. Imports are relative: ComfyUI serves this file at
// /extensions/<pack folder>/, whatever the folder is called, and its app at /scripts/.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { PoseEditorUI } from "./pose_editor_ui.js";
import { parsePose } from "./pose_model.js";

const NODE = "MasaCtrlPoseEditor";
const STORE = "pose_json";

function viewURL({ filename, subfolder = "", type = "temp" }) {
  const query = new URLSearchParams({ filename, subfolder, type });
  return api.apiURL(`/view?${query}`);
}

// What the node's run sent (its ui output: input_pose, background, canvas) into the editor.
function showRun(editor, output) {
  if (!editor || !output) return;
  const background = output.background?.[0];
  let input = null;
  try {
    input = output.input_pose?.[0] ? parsePose(output.input_pose[0]) : null;
  } catch (error) {
    editor.setStatus(`The pose input could not be read: ${error.message}`, "error");
  }
  editor.setInput(input, { background: background ? viewURL(background) : null, canvas: output.canvas?.[0] });
}

app.registerExtension({
  name: "MasaCtrl.PoseEditor",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE) return;

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      const store = this.widgets?.find((w) => w.name === STORE);
      if (!store) return result;
      store.hidden = true;  // the editor shows it; the text itself is of no use on the node
      store.computeSize = () => [0, -4];
      const root = document.createElement("div");
      const editor = new PoseEditorUI(root, {
        onChange: (text, { edit = false } = {}) => {
          // An edit is one step of the front end's change tracker (its undo history, the workflow's "modified"
          // mark, the copy kept across page reloads), which records the graph when a LiteGraph change ends.
          // Nothing else tells it: keys typed into an input and our pointer events are not what it listens to.
          if (edit) app.canvas?.emitBeforeChange?.();
          store.value = text;
          this.setDirtyCanvas?.(true, true);
          if (edit) app.canvas?.emitAfterChange?.();
        },
      });
      this.masactrlPoseEditor = editor;
      const widget = this.addDOMWidget("pose_editor", "masactrl_pose_editor", root, {
        serialize: false,  // the pose_json widget carries the value
        hideOnZoom: false,
        getMinHeight: () => 300,
      });
      widget.serialize = false;
      editor.load(store.value);
      this.setSize([Math.max(this.size[0], 460), Math.max(this.size[1], 560)]);
      return result;
    };

    // A loaded workflow sets the widget values after the node was created. The front end's own undo/redo reloads
    // the graph, so the node is new, but keeps the last run's outputs: show that run's input and image again.
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      const store = this.widgets?.find((w) => w.name === STORE);
      if (store) this.masactrlPoseEditor?.load(store.value);
      const lastRun = app.nodeOutputs?.[String(this.id)];  // keyed by node id in the root graph
      if (lastRun) showRun(this.masactrlPoseEditor, lastRun);
      return result;
    };

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      const result = onExecuted?.apply(this, arguments);
      showRun(this.masactrlPoseEditor, output);
      return result;
    };
  },
});
