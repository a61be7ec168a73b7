import ts from "typescript";

/** A module specifier written in a source file, with the 1-based line it sits on. */
export interface ImportRef {
  readonly specifier: string;
  readonly line: number;
}

/** A place where a file reads the environment (`process.env`, `Bun.env`, ...). */
export interface EnvRead {
  readonly expression: string;
  readonly line: number;
}

/** Everything the architecture rules need to know about one file. */
export interface ParsedSource {
  readonly imports: readonly ImportRef[];
  readonly envReads: readonly EnvRead[];
}

// Calls whose first argument is a module path. `vi.mock` and friends count: a test that mocks
// another module's file depends on that file's path exactly as an import would.
const LOADER_CALLS = new Set(["require", "require.resolve", "vi.mock", "vi.doMock", "vi.importActual", "vi.importMock"]);

// Modules that hand out the environment as a named export (`import { env } from "node:process"`).
const ENV_EXPORTERS = new Set(["process", "node:process", "bun"]);
const ENV_HOLDERS = new Set(["process", "Bun"]);

/**
 * Reads the imports and environment reads of one file with the TypeScript parser, so text that
 * only looks like an import (in a string or a comment) is never mistaken for one.
 *
 * @example
 * parseSource("a.ts", 'import x from "./b.ts";').imports // [{ specifier: "./b.ts", line: 1 }]
 */
export function parseSource(fileName: string, text: string): ParsedSource {
  // setParentNodes: true, because getText()/getStart() walk up to the source file.
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const lineOf = (node: ts.Node) => sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
  const imports: ImportRef[] = [];
  const envReads: EnvRead[] = [];

  const visit = (node: ts.Node): void => {
    const specifier = moduleSpecifierOf(node, sf);
    if (specifier) imports.push({ specifier: specifier.text, line: lineOf(specifier) });
    if (isEnvRead(node)) envReads.push({ expression: node.getText(sf), line: lineOf(node) });
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return { imports, envReads };
}

function moduleSpecifierOf(node: ts.Node, sf: ts.SourceFile): ts.StringLiteralLike | undefined {
  // import ... from "x", import "x", import type ... from "x", export ... from "x"
  if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) {
    return node.moduleSpecifier && ts.isStringLiteralLike(node.moduleSpecifier) ? node.moduleSpecifier : undefined;
  }
  // import x = require("x")
  if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
    const expr = node.moduleReference.expression;
    return ts.isStringLiteralLike(expr) ? expr : undefined;
  }
  // type T = typeof import("x")
  if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
    const literal = node.argument.literal;
    return ts.isStringLiteralLike(literal) ? literal : undefined;
  }
  // import("x"), require("x"), vi.mock("x")
  if (ts.isCallExpression(node)) {
    const callee = node.expression;
    const isLoader =
      callee.kind === ts.SyntaxKind.ImportKeyword ||
      ((ts.isIdentifier(callee) || ts.isPropertyAccessExpression(callee)) && LOADER_CALLS.has(callee.getText(sf)));
    const arg = node.arguments[0];
    // A computed specifier (import(name)) cannot be resolved statically; such code is rare enough to review by hand.
    return isLoader && arg && ts.isStringLiteralLike(arg) ? arg : undefined;
  }
  return undefined;
}

function isEnvRead(node: ts.Node): boolean {
  // process.env, Bun.env, import.meta.env, globalThis.process.env, process["env"]
  if (ts.isPropertyAccessExpression(node) || ts.isElementAccessExpression(node)) {
    const key = ts.isPropertyAccessExpression(node) ? node.name : node.argumentExpression;
    return ts.isMemberName(key) || ts.isStringLiteralLike(key) ? key.text === "env" && holdsEnv(node.expression) : false;
  }
  // const { env } = process
  if (ts.isVariableDeclaration(node) && ts.isObjectBindingPattern(node.name) && node.initializer) {
    return holdsEnv(node.initializer) && node.name.elements.some((e) => bindingKey(e) === "env");
  }
  // import { env } from "node:process"
  if (ts.isImportSpecifier(node)) {
    const from = node.parent.parent.parent.moduleSpecifier;
    return (node.propertyName ?? node.name).text === "env" && ts.isStringLiteral(from) && ENV_EXPORTERS.has(from.text);
  }
  return false;
}

function holdsEnv(expr: ts.Expression): boolean {
  if (ts.isMetaProperty(expr)) return expr.keywordToken === ts.SyntaxKind.ImportKeyword && expr.name.text === "meta";
  if (ts.isIdentifier(expr)) return ENV_HOLDERS.has(expr.text);
  const viaGlobal = ts.isPropertyAccessExpression(expr) && ts.isIdentifier(expr.expression) && expr.expression.text === "globalThis";
  return viaGlobal && ENV_HOLDERS.has(expr.name.text);
}

function bindingKey(element: ts.BindingElement): string | undefined {
  const key = element.propertyName ?? element.name;
  return ts.isIdentifier(key) || ts.isStringLiteral(key) ? key.text : undefined;
}
