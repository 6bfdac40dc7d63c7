/**
 * The browser entry point must load in a browser: no module it reaches through static imports may
 * import a Node built-in (a browser cannot resolve one, and the whole graph fails to load). Dynamic
 * imports are allowed: the code guards them or reaches them only from file-path functions.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, existsSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative } from "node:path";
import ts from "typescript";
import { ROOT } from "../paths.js";

interface Imports {
  /** Specifiers of imports and re-exports that load the module when the importer loads (not `import type`). */
  statics: string[];
  /** Specifiers of import() calls. */
  dynamics: string[];
}

function importsOf(file: string): Imports {
  const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true);
  const statics: string[] = [];
  const dynamics: string[] = [];
  for (const s of source.statements) {
    if (ts.isImportDeclaration(s) && ts.isStringLiteral(s.moduleSpecifier)) {
      const clause = s.importClause;
      const typeOnly = clause?.isTypeOnly ||
        (clause && !clause.name && clause.namedBindings && ts.isNamedImports(clause.namedBindings) &&
          clause.namedBindings.elements.length > 0 && clause.namedBindings.elements.every((e) => e.isTypeOnly));
      if (!typeOnly) statics.push(s.moduleSpecifier.text);
    } else if (ts.isExportDeclaration(s) && s.moduleSpecifier && ts.isStringLiteral(s.moduleSpecifier) && !s.isTypeOnly) {
      statics.push(s.moduleSpecifier.text);
    }
  }
  const visit = (n: ts.Node): void => {
    if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword && n.arguments[0] && ts.isStringLiteral(n.arguments[0])) {
      dynamics.push(n.arguments[0].text);
    }
    n.forEachChild(visit);
  };
  visit(source);
  return { statics, dynamics };
}

const isNodeBuiltin = (spec: string): boolean => spec.startsWith("node:") || builtinModules.includes(spec.split("/")[0]!);

/** The TypeScript file a relative ".js" specifier names. */
function resolveLocal(from: string, spec: string): string {
  const file = join(dirname(from), spec).replace(/\.js$/, ".ts");
  assert.ok(existsSync(file), `${relative(ROOT, from)} imports ${spec}, and ${relative(ROOT, file)} does not exist`);
  return file;
}

/** Every module src/browser.ts can load (statically, then through import()), with who imports what. */
function walk(entry: string): { statics: Map<string, string[]>; reached: Set<string> } {
  const statics = new Map<string, string[]>();
  const reached = new Set<string>();
  const loadStatic = (file: string): void => {
    if (statics.has(file)) return;
    const { statics: specs, dynamics } = importsOf(file);
    statics.set(file, specs);
    reached.add(file);
    for (const spec of specs) if (spec.startsWith(".")) loadStatic(resolveLocal(file, spec));
    for (const spec of dynamics) if (spec.startsWith(".")) loadStatic(resolveLocal(file, spec));
  };
  loadStatic(entry);
  return { statics, reached };
}

test("no module that src/browser.ts loads imports a Node built-in statically", () => {
  const { statics, reached } = walk(join(ROOT, "src/browser.ts"));
  const offenders = [...statics].flatMap(([file, specs]) => specs.filter(isNodeBuiltin).map((s) => `${relative(ROOT, file)} imports ${s}`));
  assert.deepEqual(offenders, []);
  // the walk reaches both backends and both browser loaders, so the check covers them
  for (const f of ["src/backend/webgpu/webgpu-backend.ts", "src/backend/cpu/cpu-backend.ts", "src/io/load-gguf.ts", "src/io/llama2c.ts"]) {
    assert.ok(reached.has(join(ROOT, f)), `${f} is not reached from src/browser.ts`);
  }
});

test("the import walk sees static Node imports where they exist (src/load.ts)", () => {
  // the check above must be able to fail: load.ts, Node's entry, imports node:fs/promises statically
  const { statics } = walk(join(ROOT, "src/load.ts"));
  const offenders = [...statics].flatMap(([file, specs]) => specs.filter(isNodeBuiltin).map((s) => `${relative(ROOT, file)} imports ${s}`));
  assert.ok(offenders.includes("src/load.ts imports node:fs/promises"), offenders.join("\n"));
});
