// The pose data model of the MasaCtrl pose editor: parse and validate OpenPose JSON (POSE_KEYPOINT, as
// comfyui_controlnet_aux writes it), the edit operations with undo/redo, and serialisation. No DOM, no
// drawing, no ComfyUI: it runs in any page (and mirrors completion/pose_format.py).
//
// Inside, a frame is {width, height, people: [{body, face, left_hand, right_hand}]}; each part is an array
// of points [x, y, c] in pixels (or null). c > 0: present; c == 0 with x, y kept: hidden by the user;
// [0, 0, 0]: missing/deleted. Serialised, a present point has confidence 1 (what comfyui_controlnet_aux's
// decoder needs).

export const BODY_POINTS = ["nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
  "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
  "right_eye", "left_eye", "right_ear", "left_ear"];
export const LIMBS = [[1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [1, 8], [8, 9], [9, 10], [1, 11], [11, 12],
  [12, 13], [1, 0], [0, 14], [14, 16], [0, 15], [15, 17]];
export const PARTS = { body: "pose_keypoints_2d", face: "face_keypoints_2d", left_hand: "hand_left_keypoints_2d",
  right_hand: "hand_right_keypoints_2d" };
// Body point i of a mirrored person is point MIRROR[i] of the original (left and right swap).
const MIRROR = [0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16];
// A person standing, facing the viewer, in a box 1 high centred on x = 0 (for new people and restored points).
const TEMPLATE = [[0, 0.08], [0, 0.2], [-0.1, 0.2], [-0.14, 0.36], [-0.16, 0.5], [0.1, 0.2], [0.14, 0.36],
  [0.16, 0.5], [-0.07, 0.52], [-0.07, 0.74], [-0.07, 0.95], [0.07, 0.52], [0.07, 0.74], [0.07, 0.95],
  [-0.03, 0.06], [0.03, 0.06], [-0.06, 0.08], [0.06, 0.08]];
const HISTORY_LIMIT = 200;

export class PoseFormatError extends Error {}

function parsePoints(values, where) {
  if (values === null || values === undefined || (Array.isArray(values) && values.length === 0)) return null;
  if (!Array.isArray(values) || values.length % 3) {
    throw new PoseFormatError(`${where} must be a flat list [x, y, confidence, ...] (a multiple of 3 numbers)`);
  }
  if (!values.every((v) => typeof v === "number" && Number.isFinite(v))) {
    throw new PoseFormatError(`${where} holds something that is not a finite number`);
  }
  const points = [];
  for (let i = 0; i < values.length; i += 3) points.push([values[i], values[i + 1], values[i + 2]]);
  return points;
}

// comfyui_controlnet_aux's rule: a list whose present points all lie in 0..1 is normalised.
function toPixels(points, width, height) {
  const present = points.filter((p) => p[2] > 0);
  const normalised = present.length > 0 && present.every(([x, y]) => Math.abs(x) <= 1 && Math.abs(y) <= 1);
  return normalised ? points.map(([x, y, c]) => (c > 0 ? [x * width, y * height, c] : [x, y, c])) : points;
}

export function parseFrame(frame, where = "pose") {
  if (!frame || typeof frame !== "object" || Array.isArray(frame) || !Array.isArray(frame.people ?? [])) {
    throw new PoseFormatError(`${where} must be an object with a 'people' list`);
  }
  const width = frame.canvas_width, height = frame.canvas_height;
  if (![width, height].every((v) => typeof v === "number" && v >= 1)) {
    throw new PoseFormatError(`${where} needs canvas_width and canvas_height (positive numbers)`);
  }
  const people = (frame.people ?? []).map((person, i) => {
    if (!person || typeof person !== "object" || Array.isArray(person)) {
      throw new PoseFormatError(`${where}.people[${i}] must be an object`);
    }
    const parsed = {};
    for (const [part, key] of Object.entries(PARTS)) {
      const points = parsePoints(person[key], `${where}.people[${i}].${key}`);
      if (part === "body" && points && points.length !== BODY_POINTS.length) {
        throw new PoseFormatError(`${where}.people[${i}].${key} has ${points.length} points; OpenPose bodies have 18`);
      }
      parsed[part] = points && toPixels(points, width, height);
    }
    parsed.body ??= BODY_POINTS.map(() => [0, 0, 0]);
    return parsed;
  });
  return { width: Math.round(width), height: Math.round(height), people };
}

// POSE_KEYPOINT (a list of frames), one frame, or either as JSON text -> frames. Throws PoseFormatError.
export function parsePose(value) {
  if (typeof value === "string") {
    try {
      value = JSON.parse(value);
    } catch (error) {
      throw new PoseFormatError(`the pose is not valid JSON (${error.message})`);
    }
  }
  const frames = Array.isArray(value) ? value : [value];
  if (frames.length === 0) throw new PoseFormatError("the pose is an empty list; it needs one frame per image");
  return frames.map((frame, i) => parseFrame(frame, `pose[${i}]`));
}

export function serialisePose(frames) {
  const flat = (points, fill) => (points ? points.flatMap(([x, y, c]) => (c > 0 ? [x, y, 1] : fill(x, y))) : null);
  return frames.map((frame) => ({
    people: frame.people.map((person) => {
      const out = {};
      // a hidden point keeps its place (confidence 0), so the editor can show it again
      for (const [part, key] of Object.entries(PARTS)) out[key] = flat(person[part], (x, y) => [x, y, 0]);
      return out;
    }),
    canvas_width: frame.width,
    canvas_height: frame.height,
  }));
}

export function emptyFrame(width = 512, height = 512) {
  return { width, height, people: [] };
}

export const isPresent = (point) => !!point && point[2] > 0;
export const isHidden = (point) => !!point && point[2] <= 0 && (point[0] !== 0 || point[1] !== 0);

// The nearest present or hidden point to (x, y) within `radius` (pixels of the frame).
export function hitTest(frame, x, y, radius) {
  let best = null;
  frame.people.forEach((person, personIndex) => {
    for (const part of Object.keys(PARTS)) {
      (person[part] ?? []).forEach((p, index) => {
        if (!isPresent(p) && !isHidden(p)) return;
        const d = Math.hypot(p[0] - x, p[1] - y);
        if (d <= radius && (!best || d < best.distance)) best = { person: personIndex, part, index, distance: d };
      });
    }
  });
  return best;
}

function bounds(points) {
  const shown = points.filter((p) => isPresent(p) || isHidden(p));
  if (!shown.length) return null;
  const xs = shown.map((p) => p[0]), ys = shown.map((p) => p[1]);
  return { x0: Math.min(...xs), y0: Math.min(...ys), x1: Math.max(...xs), y1: Math.max(...ys) };
}

// A document of frames with edit operations; every operation is one undo step.
export class PoseDocument {
  constructor(frames = [emptyFrame()]) {
    this.frames = structuredClone(frames);
    this.frameIndex = 0;
    this.undoStack = [];
    this.redoStack = [];
  }

  get frame() {
    return this.frames[this.frameIndex];
  }

  person(index) {
    const person = this.frame.people[index];
    if (!person) throw new RangeError(`there is no person ${index}`);
    return person;
  }

  point(personIndex, part, index) {
    const points = this.person(personIndex)[part];
    if (!points || !points[index]) throw new RangeError(`person ${personIndex} has no ${part} point ${index}`);
    return points[index];
  }

  snapshot() {
    return JSON.stringify({ frames: this.frames, frameIndex: this.frameIndex });
  }

  // Record the state before an edit (drags call it once, on their first move).
  checkpoint() {
    this.undoStack.push(this.snapshot());
    if (this.undoStack.length > HISTORY_LIMIT) this.undoStack.shift();
    this.redoStack = [];
  }

  edit(change) {
    this.checkpoint();
    return change();
  }

  restore(text) {
    const state = JSON.parse(text);
    this.frames = state.frames;
    this.frameIndex = state.frameIndex;
  }

  get canUndo() {
    return this.undoStack.length > 0;
  }

  get canRedo() {
    return this.redoStack.length > 0;
  }

  undo() {
    if (!this.canUndo) return false;
    this.redoStack.push(this.snapshot());
    this.restore(this.undoStack.pop());
    return true;
  }

  redo() {
    if (!this.canRedo) return false;
    this.undoStack.push(this.snapshot());
    this.restore(this.redoStack.pop());
    return true;
  }

  // Without a history entry: a drag records one checkpoint, then moves many times.
  movePoint(personIndex, part, index, x, y) {
    const point = this.point(personIndex, part, index);
    point[0] = Math.min(Math.max(x, 0), this.frame.width);
    point[1] = Math.min(Math.max(y, 0), this.frame.height);
    if (!isPresent(point)) point[2] = 1;
  }

  setHidden(personIndex, part, index, hidden) {
    const point = this.point(personIndex, part, index);
    if (!isPresent(point) && !isHidden(point)) throw new RangeError("a deleted point cannot be hidden; restore it");
    this.edit(() => { point[2] = hidden ? 0 : 1; });
  }

  deletePoint(personIndex, part, index) {
    const point = this.point(personIndex, part, index);
    this.edit(() => point.splice(0, 3, 0, 0, 0));
  }

  // A hidden point is shown again where it was; a deleted body point comes back where the standing
  // template puts it relative to the person's other points.
  restorePoint(personIndex, part, index) {
    const point = this.point(personIndex, part, index);
    if (isPresent(point)) return;
    this.edit(() => {
      if (isHidden(point)) {
        point[2] = 1;
        return;
      }
      const box = bounds(this.person(personIndex)[part]);
      let [x, y] = [this.frame.width / 2, this.frame.height / 2];
      if (part === "body") {
        const size = box ? Math.max(box.y1 - box.y0, box.x1 - box.x0, this.frame.height / 8) : this.frame.height / 2;
        const centre = box ? (box.x0 + box.x1) / 2 : x, top = box ? box.y0 : this.frame.height / 4;
        [x, y] = [centre + TEMPLATE[index][0] * size, top + TEMPLATE[index][1] * size];
      } else if (box) {
        [x, y] = [(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2];
      }
      point.splice(0, 3, Math.min(Math.max(x, 0), this.frame.width), Math.min(Math.max(y, 0), this.frame.height), 1);
    });
  }

  // A new person (body only): the standing template, 60 % of the canvas height, centred at (x, y).
  addPerson(x = this.frame.width / 2, y = this.frame.height / 2) {
    const size = this.frame.height * 0.6;
    const body = TEMPLATE.map(([tx, ty]) => [x + tx * size, y + (ty - 0.5) * size, 1]);
    return this.edit(() => this.frame.people.push({ body, face: null, left_hand: null, right_hand: null }) - 1);
  }

  removePerson(personIndex) {
    this.person(personIndex);
    this.edit(() => this.frame.people.splice(personIndex, 1));
  }

  // Flip a person left-right about its own centre; left and right body points and hands swap names, so
  // the result is again a correctly labelled person (the face points are flipped only).
  mirrorPerson(personIndex) {
    const person = this.person(personIndex);
    const box = bounds(Object.keys(PARTS).flatMap((part) => person[part] ?? []));
    if (!box) return;
    const flip = (points) => points && points.map(([x, y, c]) => (c > 0 || x || y ? [box.x0 + box.x1 - x, y, c] : [x, y, c]));
    this.edit(() => {
      const body = flip(person.body);
      person.body = MIRROR.map((i) => body[i]);
      [person.left_hand, person.right_hand] = [flip(person.right_hand), flip(person.left_hand)];
      person.face = flip(person.face);
    });
  }

  // The canvas becomes width x height; every point scales with it (no history: it follows the image).
  setCanvas(width, height) {
    for (const frame of this.frames) {
      const sx = width / frame.width, sy = height / frame.height;
      if (sx === 1 && sy === 1) continue;
      for (const person of frame.people) {
        for (const part of Object.keys(PARTS)) {
          for (const p of person[part] ?? []) if (p[2] > 0 || p[0] || p[1]) [p[0], p[1]] = [p[0] * sx, p[1] * sy];
        }
      }
      [frame.width, frame.height] = [width, height];
    }
  }

  toJSON() {
    return serialisePose(this.frames);
  }
}
