/**
 * Free-variable analysis of a function's source, so that an inline function
 * that captures outer variables is rejected before it is shipped to a worker.
 */
import * as Acorn from "acorn"

type Node = Acorn.Node & Record<string, any>

export type Analysis =
  | { readonly _tag: "Ok"; readonly source: string }
  | { readonly _tag: "Captures"; readonly identifiers: ReadonlyArray<string> }
  | { readonly _tag: "Native" }
  | { readonly _tag: "Unparsable"; readonly message: string }

// Identifiers a fresh worker has too: the ECMAScript and Node globals.
const workerGlobals = new Set<string>([
  ...Object.getOwnPropertyNames(globalThis),
  "undefined",
  "NaN",
  "Infinity",
  "arguments",
  "require",
  "module",
  "exports",
  "__filename",
  "__dirname"
])

const parseExpression = (source: string): Node | undefined => {
  const candidates = [`(${source})`, `({${source}})`]
  for (const candidate of candidates) {
    try {
      return Acorn.parseExpressionAt(candidate, 0, { ecmaVersion: "latest" }) as Node
    } catch {
      // try the next form: method shorthand sources are not expressions
    }
  }
  return undefined
}

/** Source text that `new Function("return " + text)()` turns back into the function. */
const shippableSource = (source: string, node: Node): string =>
  node.type === "ObjectExpression" ? `({${source}})[${firstKey(node)}]` : source

const firstKey = (node: Node): string => {
  const key = node.properties[0].key
  return JSON.stringify(key.type === "Identifier" ? key.name : key.value)
}

class Scope {
  readonly names = new Set<string>()
  readonly parent: Scope | undefined
  constructor(parent: Scope | undefined) {
    this.parent = parent
  }
  has(name: string): boolean {
    return this.names.has(name) || (this.parent?.has(name) ?? false)
  }
}

const declarePattern = (pattern: Node | null, scope: Scope, visit: (n: Node, s: Scope) => void): void => {
  if (pattern === null) return
  switch (pattern.type) {
    case "Identifier":
      scope.names.add(pattern.name)
      return
    case "ObjectPattern":
      for (const property of pattern.properties) {
        if (property.type === "RestElement") declarePattern(property.argument, scope, visit)
        else {
          if (property.computed) visit(property.key, scope)
          declarePattern(property.value, scope, visit)
        }
      }
      return
    case "ArrayPattern":
      for (const element of pattern.elements) declarePattern(element, scope, visit)
      return
    case "RestElement":
      declarePattern(pattern.argument, scope, visit)
      return
    case "AssignmentPattern":
      declarePattern(pattern.left, scope, visit)
      visit(pattern.right, scope)
      return
    default:
      visit(pattern, scope)
  }
}

// Hoists `var` and function declarations of a function body into its scope.
const hoist = (node: Node | null, scope: Scope): void => {
  if (node === null || typeof node !== "object") return
  if (Array.isArray(node)) {
    for (const child of node) hoist(child, scope)
    return
  }
  switch (node.type) {
    case "FunctionDeclaration":
      scope.names.add(node.id.name)
      return
    case "FunctionExpression":
    case "ArrowFunctionExpression":
    case "ClassExpression":
      return
    case "ClassDeclaration":
      scope.names.add(node.id.name)
      return
    case "VariableDeclaration":
      if (node.kind === "var") {
        for (const declaration of node.declarations) collectNames(declaration.id, scope)
      }
      break
  }
  for (const key of Object.keys(node)) {
    if (key === "type" || key === "start" || key === "end") continue
    const child = node[key]
    if (child !== null && typeof child === "object") hoist(child, scope)
  }
}

const collectNames = (pattern: Node | null, scope: Scope): void => declarePattern(pattern, scope, () => {})

// Block-scoped declarations (let, const, class, function) of a block's direct statements.
const declareBlock = (statements: ReadonlyArray<Node>, scope: Scope): void => {
  for (const statement of statements) {
    if (statement.type === "VariableDeclaration" && statement.kind !== "var") {
      for (const declaration of statement.declarations) collectNames(declaration.id, scope)
    } else if ((statement.type === "ClassDeclaration" || statement.type === "FunctionDeclaration") && statement.id) {
      scope.names.add(statement.id.name)
    }
  }
}

const freeIdentifiers = (root: Node): Array<string> => {
  const free = new Set<string>()
  const visit = (node: Node | null, scope: Scope): void => {
    if (node === null || typeof node !== "object") return
    switch (node.type) {
      case "Identifier":
        if (!scope.has(node.name) && !workerGlobals.has(node.name)) free.add(node.name)
        return
      case "FunctionDeclaration":
      case "FunctionExpression":
      case "ArrowFunctionExpression": {
        const inner = new Scope(scope)
        if (node.type === "FunctionExpression" && node.id) inner.names.add(node.id.name)
        for (const param of node.params) declarePattern(param, inner, visit)
        if (node.body.type === "BlockStatement") {
          hoist(node.body.body, inner)
          declareBlock(node.body.body, inner)
          for (const statement of node.body.body) visit(statement, inner)
        } else visit(node.body, inner)
        return
      }
      case "ClassDeclaration":
      case "ClassExpression": {
        const inner = new Scope(scope)
        if (node.id) inner.names.add(node.id.name)
        visit(node.superClass, inner)
        visit(node.body, inner)
        return
      }
      case "BlockStatement":
      case "StaticBlock": {
        const inner = new Scope(scope)
        declareBlock(node.body, inner)
        for (const statement of node.body) visit(statement, inner)
        return
      }
      case "ForStatement":
      case "ForInStatement":
      case "ForOfStatement": {
        const inner = new Scope(scope)
        const head = node.type === "ForStatement" ? node.init : node.left
        if (head && head.type === "VariableDeclaration") {
          for (const declaration of head.declarations) declarePattern(declaration.id, inner, visit)
        }
        for (const key of ["init", "test", "update", "left", "right", "body"]) {
          const child = node[key]
          if (child && child.type !== "VariableDeclaration") visit(child, inner)
          else if (child) { for (const declaration of child.declarations) visit(declaration.init, inner) }
        }
        return
      }
      case "CatchClause": {
        const inner = new Scope(scope)
        declarePattern(node.param, inner, visit)
        visit(node.body, inner)
        return
      }
      case "VariableDeclarator":
        declarePattern(node.id, scope, visit)
        visit(node.init, scope)
        return
      case "MemberExpression":
        visit(node.object, scope)
        if (node.computed) visit(node.property, scope)
        return
      case "Property":
      case "PropertyDefinition":
      case "MethodDefinition":
        if (node.computed) visit(node.key, scope)
        if (node.type === "Property" && node.shorthand && node.value.type === "Identifier") visit(node.value, scope)
        else visit(node.value, scope)
        return
      case "LabeledStatement":
        visit(node.body, scope)
        return
      case "BreakStatement":
      case "ContinueStatement":
      case "MetaProperty":
      case "Literal":
      case "ThisExpression":
      case "Super":
        return
    }
    for (const key of Object.keys(node)) {
      if (key === "type" || key === "start" || key === "end") continue
      const child = node[key]
      if (Array.isArray(child)) { for (const item of child) visit(item, scope) }
      else if (child !== null && typeof child === "object" && typeof child.type === "string") visit(child, scope)
    }
  }
  visit(root, new Scope(undefined))
  return [...free]
}

const analyses = new Map<string, Analysis>()
const MAX_CACHED = 1024

/** Decides whether `fn` can be rebuilt from its source in another isolate. Results are cached by source. */
export const analyze = (fn: Function): Analysis => {
  const source = Function.prototype.toString.call(fn)
  let analysis = analyses.get(source)
  if (analysis === undefined) {
    analysis = analyzeSource(fn, source)
    if (analyses.size >= MAX_CACHED) analyses.clear()
    analyses.set(source, analysis)
  }
  return analysis
}

const analyzeSource = (fn: Function, source: string): Analysis => {
  if (/\{\s*\[native code\]\s*\}\s*$/.test(source)) return { _tag: "Native" }
  const node = parseExpression(source)
  if (node === undefined) {
    return { _tag: "Unparsable", message: `cannot parse the source of ${fn.name || "<anonymous>"}` }
  }
  const identifiers = freeIdentifiers(node)
  return identifiers.length > 0
    ? { _tag: "Captures", identifiers }
    : { _tag: "Ok", source: shippableSource(source, node) }
}

/** The names of a function's parameters, read from its source ("" for a destructured one); undefined if unreadable. */
export const parameterNames = (fn: Function): Array<string> | undefined => {
  const node = parseExpression(Function.prototype.toString.call(fn))
  if (node === undefined) return undefined
  const target = node.type === "ObjectExpression" ? (node as any).properties[0]?.value : node
  if (target === undefined || !Array.isArray((target as any).params)) return undefined
  return ((target as any).params as Array<Node>).map((param: any) => {
    const inner = param.type === "AssignmentPattern"
      ? param.left
      : param.type === "RestElement"
      ? param.argument
      : param
    return inner.type === "Identifier" ? inner.name as string : ""
  })
}

/**
 * A function's source as a token stream that ignores formatting, comments, quotes, commas, semicolons and
 * the spelling of local names, while literals, structure and the properties it reads still count. It is the same
 * for TypeScript stripped by Node, a bundler's output, or a test runner's rewritten imports: vitest turns
 * `Effect.as` (a named import) into `__vite_ssr_import_0__.Effect.as`, `Path.join` (a namespace import) into
 * `__vite_ssr_import_4__.join`, and a bare `pipe(x)` into `(0, __vite_ssr_import_1__.pipe)(x)`. A chain of
 * names joined by dots is therefore taken by its last property alone, and `(0, chain)` as a plain name.
 */
export const canonicalSource = (source: string): string => {
  try {
    const tokens: Array<string> = []
    let chain: string | undefined
    let afterDot = false
    for (const token of Acorn.tokenizer(`(${source})`, { ecmaVersion: "latest" })) {
      const label = token.type.label
      // Commas and semicolons: a trailing comma, or a transform that writes the semicolons ASI would insert.
      if (label === "," || label === ";") continue
      const value = (token as { value?: unknown }).value
      if (label === "name" && (chain === undefined || afterDot)) {
        chain = afterDot ? `ref:${String(value)}` : "name"
        afterDot = false
        continue
      }
      if (label === "." && chain !== undefined && !afterDot) {
        afterDot = true
        continue
      }
      if (chain !== undefined) {
        // `(0, chain)`: a bare imported function called without its module as `this`.
        const n = tokens.length
        if (label === ")" && tokens[n - 1] === "num:0" && tokens[n - 2] === "(") {
          tokens.length = n - 2
          tokens.push("name")
          chain = undefined
          continue
        }
        tokens.push(chain)
        if (afterDot) tokens.push(".")
        chain = undefined
        afterDot = false
      }
      tokens.push(label === "name" || value === undefined || value === null ? label : `${label}:${String(value)}`)
    }
    if (chain !== undefined) tokens.push(chain)
    return tokens.join(" ")
  } catch {
    return source
  }
}
