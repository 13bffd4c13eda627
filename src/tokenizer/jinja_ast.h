// Syntax tree of a parsed template: expressions and statements. Nodes are
// immutable after parsing, so one parsed template can render concurrently.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja_error.h"
#include "tokenizer/jinja_value.h"

namespace moeserve::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprKind {
  kLiteral,  // value
  kName,     // name
  kList,     // items
  kTuple,    // items
  kDict,     // keys[i] : items[i]
  kGetAttr,  // object.name
  kGetItem,  // object[index]
  kSlice,    // object[start:stop:step] (missing parts are null)
  kCall,     // callee(args, kwargs)
  kFilter,   // object | name(args, kwargs)
  kTest,     // object is [not] name(args)
  kUnary,    // op object: "-", "+", "not"
  kBinary,   // left op right: arithmetic, "~", comparisons, "in", "not in"
  kAnd,      // left and right
  kOr,       // left or right
  kTernary,  // then_expr if cond else else_expr
};

struct Expr {
  ExprKind kind;
  SourceLoc loc;
  Value value;                 // kLiteral
  std::string name;            // kName, kGetAttr, kFilter, kTest; operator for kUnary/kBinary
  ExprPtr object;              // operand / left / callee / condition
  ExprPtr right;               // right operand / index / slice start / then
  ExprPtr third;               // slice stop / else
  ExprPtr fourth;              // slice step
  std::vector<ExprPtr> items;  // list/tuple items, dict values, call/filter/test args
  std::vector<ExprPtr> keys;   // dict keys
  std::vector<std::pair<std::string, ExprPtr>> kwargs;  // call/filter keyword args
  bool negated = false;                                 // kTest: "is not"

  Expr(ExprKind k, SourceLoc l) : kind(k), loc(l) {}
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class StmtKind {
  kText,         // text
  kOutput,       // {{ expr }}
  kIf,           // conditions[i] -> bodies[i]; else_body
  kFor,          // for targets in expr [if cond]: body; else_body
  kSet,          // set target[.attr] = expr, or block form capturing body
  kMacro,        // macro name(params): body
  kCallBlock,    // call(params) expr: body
  kFilterBlock,  // filter expr(<body output>): body
  kBreak,
  kContinue,
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // may be null
};

struct Stmt {
  StmtKind kind;
  SourceLoc loc;
  std::string text;                  // kText
  ExprPtr expr;                      // output value, for iterable, set value, call expr
  ExprPtr cond;                      // for-loop filter
  std::vector<ExprPtr> conditions;   // kIf
  std::vector<Body> bodies;          // kIf
  Body body;                         // for/set-block/macro/call/filter body
  Body else_body;                    // if/for else
  std::vector<std::string> targets;  // for-loop / set names (several unpack a tuple)
  std::string name;                  // macro name; kSet: attribute in `set ns.attr = ...`
  std::vector<MacroParam> params;    // macro / call-block parameters

  Stmt(StmtKind k, SourceLoc l) : kind(k), loc(l) {}
};

struct Template {
  Body body;
};

}  // namespace moeserve::jinja
