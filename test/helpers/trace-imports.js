// Preload (`node --import ./trace-imports.js`) that appends every module URL
// the process resolves to the file named by $AGON_TRACE_IMPORTS, one a line:
// lets a test see which packages a command loaded.
import { register } from "node:module";

const file = process.env.AGON_TRACE_IMPORTS;
if (file) {
  const hooks = `
    import { appendFileSync } from "node:fs";
    export async function resolve(specifier, context, next) {
      const result = await next(specifier, context);
      appendFileSync(${JSON.stringify(file)}, result.url + "\\n");
      return result;
    }`;
  register(`data:text/javascript,${encodeURIComponent(hooks)}`);
}
