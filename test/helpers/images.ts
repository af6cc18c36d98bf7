// Small image folders for tests that train image models on files.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PNG } from "pngjs";
import { Rng } from "../../shared/rng.js";
import { tempDir } from "./cli.js";

/**
 * Writes `perClass` random RGB PNGs of side `size` into a new temp folder (flat,
 * unlabelled) or, with `classes` > 0, into class subfolders c0, c1, … (the
 * ImageFolder layout, one label per subfolder). Returns the folder.
 */
export function imageFolder(size: number, perClass: number, classes = 0): string {
  const dir = tempDir("agon-images-");
  const rng = new Rng(size * 31 + classes);
  const folders =
    classes === 0 ? [dir] : Array.from({ length: classes }, (_, c) => join(dir, `c${c}`));
  for (const folder of folders) {
    mkdirSync(folder, { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const png = new PNG({ width: size, height: size });
      for (let k = 0; k < png.data.length; k++) png.data[k] = k % 4 === 3 ? 255 : rng.nextInt(256);
      writeFileSync(join(folder, `${i}.png`), PNG.sync.write(png));
    }
  }
  return dir;
}
