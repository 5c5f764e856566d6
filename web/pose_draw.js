// Drawing of a pose frame on a 2D canvas in the standard OpenPose colours (those of controlnet_aux's
// draw_bodypose, mirrored in completion/pose_format.py), plus the editor's marks: hidden points, selection.
import { LIMBS, PARTS, isHidden, isPresent } from "./pose_model.js";

export const COLORS = [[255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0],
  [0, 255, 0], [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255],
  [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85]];
const HAND_EDGES = Array.from({ length: 20 }, (_, i) => [i % 4 === 0 ? 0 : i, i + 1]);
const rgb = ([r, g, b], k = 1) => `rgb(${Math.floor(r * k)}, ${Math.floor(g * k)}, ${Math.floor(b * k)})`;

// HSV (hue 0..1, full saturation and value) as controlnet_aux colours the hand edges.
function hue(h) {
  const i = Math.floor(h * 6), f = h * 6 - i, q = 1 - f;
  return [[1, f, 0], [q, 1, 0], [0, 1, f], [0, q, 1], [f, 0, 1], [1, 0, q]][i % 6].map((v) => v * 255);
}

function dot(ctx, [x, y], radius, fill) {
  ctx.beginPath();
  ctx.arc(x, y, radius, 0, 2 * Math.PI);
  ctx.fillStyle = fill;
  ctx.fill();
}

// Draw `frame` with ctx already scaled to frame pixels. options: limbWidth (half-thickness, OpenPose 4),
// pointRadius, showHidden (dashed rings where hidden points are), selected ({person, part, index}),
// selectedPerson (index: a dashed box around it).
export function drawPose(ctx, frame, options = {}) {
  const { limbWidth = 4, pointRadius = 4, showHidden = false, selected = null, selectedPerson = null } = options;
  frame.people.forEach((person, personIndex) => {
    const body = person.body;
    LIMBS.forEach(([a, b], i) => {
      if (!isPresent(body[a]) || !isPresent(body[b])) return;
      const [x0, y0] = body[a], [x1, y1] = body[b];
      ctx.beginPath();
      ctx.ellipse((x0 + x1) / 2, (y0 + y1) / 2, Math.max(Math.hypot(x0 - x1, y0 - y1) / 2, 0.5), limbWidth,
        Math.atan2(y0 - y1, x0 - x1), 0, 2 * Math.PI);
      ctx.fillStyle = rgb(COLORS[i], 0.6);
      ctx.fill();
    });
    body.forEach((p, i) => isPresent(p) && dot(ctx, p, pointRadius, rgb(COLORS[i])));
    for (const hand of [person.left_hand, person.right_hand]) {
      if (!hand) continue;
      ctx.lineWidth = 2;
      HAND_EDGES.forEach(([a, b], i) => {
        if (!isPresent(hand[a]) || !isPresent(hand[b])) return;
        ctx.beginPath();
        ctx.moveTo(hand[a][0], hand[a][1]);
        ctx.lineTo(hand[b][0], hand[b][1]);
        ctx.strokeStyle = rgb(hue(i / HAND_EDGES.length));
        ctx.stroke();
      });
      hand.forEach((p) => isPresent(p) && dot(ctx, p, pointRadius, "rgb(0, 0, 255)"));
    }
    (person.face ?? []).forEach((p) => isPresent(p) && dot(ctx, p, Math.max(pointRadius - 1, 1), "rgb(255, 255, 255)"));
    if (showHidden) drawHidden(ctx, person, pointRadius);
    if (personIndex === selectedPerson) drawBox(ctx, person, pointRadius);
  });
  if (selected && frame.people[selected.person]) {
    const p = frame.people[selected.person][selected.part]?.[selected.index];
    if (p && (isPresent(p) || isHidden(p))) {
      ctx.beginPath();
      ctx.arc(p[0], p[1], pointRadius + 3, 0, 2 * Math.PI);
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#fff";
      ctx.setLineDash([]);
      ctx.stroke();
    }
  }
}

function drawHidden(ctx, person, radius) {
  ctx.save();
  ctx.setLineDash([2, 2]);
  ctx.lineWidth = 1.5;
  for (const part of Object.keys(PARTS)) {
    (person[part] ?? []).forEach((p, i) => {
      if (!isHidden(p)) return;
      ctx.beginPath();
      ctx.arc(p[0], p[1], radius, 0, 2 * Math.PI);
      ctx.strokeStyle = part === "body" ? rgb(COLORS[i]) : "#ccc";
      ctx.stroke();
    });
  }
  ctx.restore();
}

function drawBox(ctx, person, radius) {
  const shown = Object.keys(PARTS).flatMap((part) => person[part] ?? []).filter((p) => isPresent(p) || isHidden(p));
  if (!shown.length) return;
  const xs = shown.map((p) => p[0]), ys = shown.map((p) => p[1]), pad = radius * 3;
  ctx.save();
  ctx.setLineDash([6, 4]);
  ctx.lineWidth = 1;
  ctx.strokeStyle = "rgba(255, 255, 255, 0.7)";
  ctx.strokeRect(Math.min(...xs) - pad, Math.min(...ys) - pad, Math.max(...xs) - Math.min(...xs) + 2 * pad,
    Math.max(...ys) - Math.min(...ys) + 2 * pad);
  ctx.restore();
}
