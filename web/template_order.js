// Lists this pack's templates in the Templates browser in the order of example_templates.json (the main
// example first). Front end 1.27 lists a custom pack's templates in the order the server's glob finds the
// files (directory order, which differs between machines) and reads no index.json for them, so this wraps
// the one call that fetches the listing and sorts this pack's entry; every other pack's is left alone, and
// a front end without the call is left alone too. URLs are relative: ComfyUI serves this file at
// /extensions/<pack folder>/, whatever the folder is called.
import { api } from "../../scripts/api.js";

const PACK_FOLDER = decodeURIComponent(new URL(".", import.meta.url).pathname.split("/").filter(Boolean).at(-1));
const MANIFEST = new URL("./example_templates.json", import.meta.url);

export function orderTemplates(names, order) {
  const rank = new Map(order.map((name, index) => [name, index]));
  const place = (name) => rank.get(name) ?? order.length;  // unknown names last, alphabetically
  return [...names].sort((a, b) => place(a) - place(b) || a.localeCompare(b));
}

if (typeof api.getWorkflowTemplates === "function") {
  const listTemplates = api.getWorkflowTemplates.bind(api);
  api.getWorkflowTemplates = async () => {
    const listing = await listTemplates();
    if (Array.isArray(listing?.[PACK_FOLDER])) {
      try {
        const { templates } = await (await fetch(MANIFEST)).json();
        listing[PACK_FOLDER] = orderTemplates(listing[PACK_FOLDER], templates.map((t) => t.name));
      } catch (error) {
        console.warn("MasaCtrl Suite: templates listed in the server's order:", error);
      }
    }
    return listing;
  };
}
