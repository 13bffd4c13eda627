#include "tokenizer/jinja_parser.h"

#include <initializer_list>

#include "tokenizer/jinja_filters.h"
#include "tokenizer/jinja_lexer.h"

namespace moeserve::jinja {
namespace {

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  std::unique_ptr<Template> parse() {
    auto tmpl = std::make_unique<Template>();
    std::string found;
    tmpl->body = parse_until({}, &found, SourceLoc{});
    return tmpl;
  }

 private:
  // RAII guard on the recursion depth.
  class DepthGuard {
   public:
    DepthGuard(Parser& p, SourceLoc loc) : p_(p) {
      if (++p_.depth_ > kMaxNestingDepth) fail_at(loc, "template nested too deeply");
    }
    ~DepthGuard() { --p_.depth_; }

   private:
    Parser& p_;
  };

  // Chains built in loops (a + b + c, x.a.b, x | f | g) nest their nodes as
  // deeply as recursion does, and evaluation recurses once per link: every
  // link counts toward the nesting limit until the chain's function returns.
  class ChainGuard {
   public:
    explicit ChainGuard(Parser& p) : p_(p), saved_(p.depth_) {}
    ~ChainGuard() { p_.depth_ = saved_; }
    void link(SourceLoc loc) {
      if (++p_.depth_ > kMaxNestingDepth) fail_at(loc, "expression nested too deeply");
    }

   private:
    Parser& p_;
    int saved_;
  };

  const Token& peek(size_t ahead = 0) const {
    const size_t i = pos_ + ahead;
    return i < tokens_.size() ? tokens_[i] : tokens_.back();
  }
  const Token& next() {
    const Token& t = peek();
    if (pos_ < tokens_.size() - 1) ++pos_;
    return t;
  }
  bool at_op(std::string_view op, size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::kOp && peek(ahead).text == op;
  }
  bool at_name(std::string_view name, size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::kName && peek(ahead).text == name;
  }
  bool skip_op(std::string_view op) {
    if (!at_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(std::string_view name) {
    if (!at_name(name)) return false;
    next();
    return true;
  }
  [[noreturn]] void unexpected(std::string_view expected) const {
    const Token& t = peek();
    std::string got;
    switch (t.kind) {
      case TokenKind::kEof: got = "end of template"; break;
      case TokenKind::kExprEnd: got = "'}}'"; break;
      case TokenKind::kStmtEnd: got = "'%}'"; break;
      case TokenKind::kString: got = "string literal"; break;
      default: got = "'" + t.text + "'";
    }
    fail_at(t.loc, "expected " + std::string(expected) + ", got " + got);
  }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) unexpected("'" + std::string(op) + "'");
  }
  std::string expect_name() {
    if (peek().kind != TokenKind::kName) unexpected("a name");
    return next().text;
  }
  void expect_stmt_end() {
    if (peek().kind != TokenKind::kStmtEnd) unexpected("'%}'");
    next();
  }

  // ---- statements ----------------------------------------------------------

  // Parses until a `{% <terminator> ...` tag; consumes `{%` and the tag name,
  // stores the name in *found and leaves the rest of the tag to the caller.
  Body parse_until(std::initializer_list<std::string_view> terminators, std::string* found,
                   SourceLoc opener) {
    DepthGuard guard(*this, peek().loc);
    Body body;
    while (true) {
      const Token& t = peek();
      switch (t.kind) {
        case TokenKind::kText: {
          auto s = std::make_unique<Stmt>(StmtKind::kText, t.loc);
          s->text = t.text;
          body.push_back(std::move(s));
          next();
          break;
        }
        case TokenKind::kExprBegin: {
          auto s = std::make_unique<Stmt>(StmtKind::kOutput, t.loc);
          next();
          s->expr = parse_expression();
          if (peek().kind != TokenKind::kExprEnd) unexpected("'}}'");
          next();
          body.push_back(std::move(s));
          break;
        }
        case TokenKind::kStmtBegin: {
          const Token& tag = peek(1);
          if (tag.kind != TokenKind::kName) {
            next();
            unexpected("a tag name");
          }
          for (std::string_view term : terminators) {
            if (tag.text == term) {
              *found = tag.text;
              next();
              next();
              return body;
            }
          }
          next();
          if (StmtPtr s = parse_statement()) body.push_back(std::move(s));
          break;
        }
        case TokenKind::kEof: {
          if (terminators.size() == 0) return body;
          std::string names;
          for (std::string_view term : terminators) {
            if (!names.empty()) names += " or ";
            names += "'" + std::string(term) + "'";
          }
          fail_at(opener, "unclosed block: expected " + names + " before end of template");
        }
        default: unexpected("text or a tag");
      }
    }
  }

  // Called after `{%`; returns null for tags that produce nothing.
  StmtPtr parse_statement() {
    const Token& tag = next();
    const SourceLoc loc = tag.loc;
    const std::string name = tag.text;
    if (name == "if") return parse_if(loc);
    if (name == "for") return parse_for(loc);
    if (name == "set") return parse_set(loc);
    if (name == "macro") return parse_macro(loc);
    if (name == "call") return parse_call_block(loc);
    if (name == "filter") return parse_filter_block(loc);
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) fail_at(loc, "'" + name + "' outside of a loop");
      expect_stmt_end();
      return std::make_unique<Stmt>(name == "break" ? StmtKind::kBreak : StmtKind::kContinue, loc);
    }
    if (name == "generation" || name == "endgeneration") {  // HF training markers
      expect_stmt_end();
      return nullptr;
    }
    fail_at(loc, "unknown tag '" + name + "'");
  }

  StmtPtr parse_if(SourceLoc loc) {
    auto s = std::make_unique<Stmt>(StmtKind::kIf, loc);
    std::string found;
    s->conditions.push_back(parse_expression());
    expect_stmt_end();
    s->bodies.push_back(parse_until({"elif", "else", "endif"}, &found, loc));
    while (found == "elif") {
      s->conditions.push_back(parse_expression());
      expect_stmt_end();
      s->bodies.push_back(parse_until({"elif", "else", "endif"}, &found, loc));
    }
    if (found == "else") {
      expect_stmt_end();
      s->else_body = parse_until({"endif"}, &found, loc);
    }
    expect_stmt_end();
    return s;
  }

  StmtPtr parse_for(SourceLoc loc) {
    auto s = std::make_unique<Stmt>(StmtKind::kFor, loc);
    do {
      s->targets.push_back(expect_name());
    } while (skip_op(","));
    if (!skip_name("in")) unexpected("'in'");
    s->expr = parse_or();
    if (skip_name("if")) s->cond = parse_or();
    if (at_name("recursive")) fail_at(peek().loc, "recursive loops are not supported");
    expect_stmt_end();
    std::string found;
    ++loop_depth_;
    s->body = parse_until({"else", "endfor"}, &found, loc);
    --loop_depth_;
    if (found == "else") {
      expect_stmt_end();
      s->else_body = parse_until({"endfor"}, &found, loc);
    }
    expect_stmt_end();
    return s;
  }

  StmtPtr parse_set(SourceLoc loc) {
    auto s = std::make_unique<Stmt>(StmtKind::kSet, loc);
    s->targets.push_back(expect_name());
    if (skip_op(".")) {
      s->name = expect_name();
    } else {
      while (skip_op(",")) s->targets.push_back(expect_name());
    }
    if (skip_op("=")) {
      s->expr = parse_tuple_or_expression();
      expect_stmt_end();
      return s;
    }
    if (s->targets.size() != 1 || !s->name.empty()) unexpected("'='");
    expect_stmt_end();
    std::string found;
    s->body = parse_until({"endset"}, &found, loc);
    expect_stmt_end();
    return s;
  }

  std::vector<MacroParam> parse_params() {
    std::vector<MacroParam> params;
    expect_op("(");
    while (!at_op(")")) {
      MacroParam p;
      p.name = expect_name();
      if (skip_op("=")) p.default_value = parse_expression();
      params.push_back(std::move(p));
      if (!skip_op(",")) break;
    }
    expect_op(")");
    return params;
  }

  StmtPtr parse_macro(SourceLoc loc) {
    auto s = std::make_unique<Stmt>(StmtKind::kMacro, loc);
    s->name = expect_name();
    s->params = parse_params();
    expect_stmt_end();
    std::string found;
    const int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    s->body = parse_until({"endmacro"}, &found, loc);
    loop_depth_ = saved_loop_depth;
    expect_stmt_end();
    return s;
  }

  StmtPtr parse_call_block(SourceLoc loc) {
    auto s = std::make_unique<Stmt>(StmtKind::kCallBlock, loc);
    if (at_op("(")) s->params = parse_params();
    s->expr = parse_expression();
    if (s->expr->kind != ExprKind::kCall) fail_at(s->expr->loc, "expected a macro call");
    expect_stmt_end();
    std::string found;
    s->body = parse_until({"endcall"}, &found, loc);
    expect_stmt_end();
    return s;
  }

  StmtPtr parse_filter_block(SourceLoc loc) {
    auto s = std::make_unique<Stmt>(StmtKind::kFilterBlock, loc);
    s->expr = parse_filter(nullptr);
    ChainGuard chain(*this);
    while (skip_op("|")) {
      chain.link(peek().loc);
      s->expr = parse_filter(std::move(s->expr));
    }
    expect_stmt_end();
    std::string found;
    s->body = parse_until({"endfilter"}, &found, loc);
    expect_stmt_end();
    return s;
  }

  // ---- expressions (Jinja2 precedence, lowest first) -----------------------

  ExprPtr make(ExprKind kind, SourceLoc loc) { return std::make_unique<Expr>(kind, loc); }

  ExprPtr make_binary(ExprKind kind, std::string op, ExprPtr left, ExprPtr right, SourceLoc loc) {
    ExprPtr e = make(kind, loc);
    e->name = std::move(op);
    e->object = std::move(left);
    e->right = std::move(right);
    return e;
  }

  // `a, b` without brackets (only on the right of `set`).
  ExprPtr parse_tuple_or_expression() {
    const SourceLoc loc = peek().loc;
    ExprPtr first = parse_expression();
    if (!at_op(",")) return first;
    ExprPtr tuple = make(ExprKind::kTuple, loc);
    tuple->items.push_back(std::move(first));
    while (skip_op(",")) {
      if (peek().kind == TokenKind::kStmtEnd) break;
      tuple->items.push_back(parse_expression());
    }
    return tuple;
  }

  ExprPtr parse_expression() {
    DepthGuard guard(*this, peek().loc);
    ChainGuard chain(*this);
    ExprPtr e = parse_or();
    while (at_name("if")) {
      const SourceLoc loc = next().loc;
      chain.link(loc);
      ExprPtr t = make(ExprKind::kTernary, loc);
      t->right = std::move(e);
      t->object = parse_or();
      if (skip_name("else")) t->third = parse_expression();
      e = std::move(t);
    }
    return e;
  }

  ExprPtr parse_or() {
    ChainGuard chain(*this);
    ExprPtr e = parse_and();
    while (at_name("or")) {
      const SourceLoc loc = next().loc;
      chain.link(loc);
      e = make_binary(ExprKind::kOr, "or", std::move(e), parse_and(), loc);
    }
    return e;
  }

  ExprPtr parse_and() {
    ChainGuard chain(*this);
    ExprPtr e = parse_not();
    while (at_name("and")) {
      const SourceLoc loc = next().loc;
      chain.link(loc);
      e = make_binary(ExprKind::kAnd, "and", std::move(e), parse_not(), loc);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (at_name("not")) {
      DepthGuard guard(*this, peek().loc);
      const SourceLoc loc = next().loc;
      ExprPtr e = make(ExprKind::kUnary, loc);
      e->name = "not";
      e->object = parse_not();
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    ChainGuard chain(*this);
    ExprPtr e = parse_math1();
    while (true) {
      const Token& t = peek();
      chain.link(t.loc);
      std::string op;
      if (t.kind == TokenKind::kOp && (t.text == "==" || t.text == "!=" || t.text == "<" ||
                                       t.text == ">" || t.text == "<=" || t.text == ">=")) {
        op = t.text;
        next();
      } else if (at_name("in")) {
        op = "in";
        next();
      } else if (at_name("not") && at_name("in", 1)) {
        op = "not in";
        next();
        next();
      } else {
        return e;
      }
      e = make_binary(ExprKind::kBinary, op, std::move(e), parse_math1(), t.loc);
    }
  }

  ExprPtr parse_binary_level(std::initializer_list<std::string_view> ops,
                             ExprPtr (Parser::*operand)()) {
    ChainGuard chain(*this);
    ExprPtr e = (this->*operand)();
    while (true) {
      chain.link(peek().loc);
      bool matched = false;
      for (std::string_view op : ops) {
        if (at_op(op)) {
          const SourceLoc loc = next().loc;
          e = make_binary(ExprKind::kBinary, std::string(op), std::move(e), (this->*operand)(),
                          loc);
          matched = true;
          break;
        }
      }
      if (!matched) return e;
    }
  }

  ExprPtr parse_math1() { return parse_binary_level({"+", "-"}, &Parser::parse_concat); }
  ExprPtr parse_concat() { return parse_binary_level({"~"}, &Parser::parse_math2); }
  ExprPtr parse_math2() { return parse_binary_level({"*", "/", "//", "%"}, &Parser::parse_pow); }
  ExprPtr parse_pow() { return parse_binary_level({"**"}, &Parser::parse_unary_filtered); }
  ExprPtr parse_unary_filtered() { return parse_unary(true); }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this, peek().loc);
    ExprPtr e;
    if (at_op("-") || at_op("+")) {
      const Token& t = next();
      e = make(ExprKind::kUnary, t.loc);
      e->name = t.text;
      e->object = parse_unary(false);
    } else {
      e = parse_postfix(parse_primary());
    }
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    ExprPtr e;
    switch (t.kind) {
      case TokenKind::kName: {
        next();
        e = make(ExprKind::kLiteral, t.loc);
        if (t.text == "true" || t.text == "True")
          e->value = Value(true);
        else if (t.text == "false" || t.text == "False")
          e->value = Value(false);
        else if (t.text == "none" || t.text == "None")
          e->value = Value::none();
        else {
          e->kind = ExprKind::kName;
          e->name = t.text;
        }
        return e;
      }
      case TokenKind::kString: {
        e = make(ExprKind::kLiteral, t.loc);
        std::string s;
        while (peek().kind == TokenKind::kString) s += next().text;  // "a" "b" concatenates
        e->value = Value(std::move(s));
        return e;
      }
      case TokenKind::kInt:
        e = make(ExprKind::kLiteral, t.loc);
        e->value = Value(t.int_value);
        next();
        return e;
      case TokenKind::kFloat:
        e = make(ExprKind::kLiteral, t.loc);
        e->value = Value(t.float_value);
        next();
        return e;
      case TokenKind::kOp:
        if (t.text == "(") return parse_paren();
        if (t.text == "[") return parse_list();
        if (t.text == "{") return parse_dict();
        break;
      default: break;
    }
    unexpected("an expression");
  }

  ExprPtr parse_paren() {
    const SourceLoc loc = next().loc;
    if (skip_op(")")) return make(ExprKind::kTuple, loc);
    ExprPtr first = parse_expression();
    if (skip_op(")")) return first;
    ExprPtr tuple = make(ExprKind::kTuple, loc);
    tuple->items.push_back(std::move(first));
    while (skip_op(",")) {
      if (at_op(")")) break;
      tuple->items.push_back(parse_expression());
    }
    expect_op(")");
    return tuple;
  }

  ExprPtr parse_list() {
    ExprPtr list = make(ExprKind::kList, next().loc);
    while (!at_op("]")) {
      list->items.push_back(parse_expression());
      if (!skip_op(",")) break;
    }
    expect_op("]");
    return list;
  }

  ExprPtr parse_dict() {
    ExprPtr dict = make(ExprKind::kDict, next().loc);
    while (!at_op("}")) {
      dict->keys.push_back(parse_expression());
      expect_op(":");
      dict->items.push_back(parse_expression());
      if (!skip_op(",")) break;
    }
    expect_op("}");
    return dict;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    ChainGuard chain(*this);
    while (true) {
      chain.link(peek().loc);
      if (at_op(".")) {
        const SourceLoc loc = next().loc;
        if (peek().kind == TokenKind::kInt) {  // x.0 is x[0]
          ExprPtr item = make(ExprKind::kGetItem, loc);
          item->object = std::move(e);
          item->right = make(ExprKind::kLiteral, peek().loc);
          item->right->value = Value(next().int_value);
          e = std::move(item);
          continue;
        }
        ExprPtr attr = make(ExprKind::kGetAttr, loc);
        attr->object = std::move(e);
        attr->name = expect_name();
        e = std::move(attr);
      } else if (at_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (at_op("(")) {
        ExprPtr call = make(ExprKind::kCall, e->loc);  // errors point at the callee
        call->object = std::move(e);
        parse_call_args(*call);
        e = std::move(call);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr object) {
    const SourceLoc loc = next().loc;
    ExprPtr start;
    if (!at_op(":")) start = parse_expression();
    if (!at_op(":")) {
      expect_op("]");
      ExprPtr item = make(ExprKind::kGetItem, loc);
      item->object = std::move(object);
      item->right = std::move(start);
      return item;
    }
    ExprPtr slice = make(ExprKind::kSlice, loc);
    slice->object = std::move(object);
    slice->right = std::move(start);
    next();  // ':'
    if (!at_op(":") && !at_op("]")) slice->third = parse_expression();
    if (skip_op(":") && !at_op("]")) slice->fourth = parse_expression();
    expect_op("]");
    return slice;
  }

  void parse_call_args(Expr& call) {
    expect_op("(");
    while (!at_op(")")) {
      if (peek().kind == TokenKind::kName && at_op("=", 1)) {
        std::string key = next().text;
        next();
        call.kwargs.emplace_back(std::move(key), parse_expression());
      } else {
        if (!call.kwargs.empty()) fail_at(peek().loc, "positional argument after keyword argument");
        call.items.push_back(parse_expression());
      }
      if (!skip_op(",")) break;
    }
    expect_op(")");
  }

  // After the `|`: name and optional arguments, applied to `object`.
  ExprPtr parse_filter(ExprPtr object) {
    const Token& t = peek();
    const std::string name = expect_name();
    if (!is_known_filter(name)) fail_at(t.loc, "unknown filter '" + name + "'");
    ExprPtr f = make(ExprKind::kFilter, t.loc);
    f->name = name;
    f->object = std::move(object);
    if (at_op("(")) parse_call_args(*f);
    return f;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    ChainGuard chain(*this);
    while (true) {
      chain.link(peek().loc);
      if (skip_op("|")) {
        e = parse_filter(std::move(e));
      } else if (at_name("is")) {
        next();
        ExprPtr test = make(ExprKind::kTest, peek().loc);
        test->negated = skip_name("not");
        const Token& t = peek();
        test->name = expect_name();
        if (!is_known_test(test->name)) fail_at(t.loc, "unknown test '" + test->name + "'");
        test->object = std::move(e);
        if (at_op("(")) {
          parse_call_args(*test);
        } else if (starts_test_argument()) {
          test->items.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(test);
      } else {
        return e;
      }
    }
  }

  // `x is divisibleby 3`: a test takes one argument without parentheses.
  bool starts_test_argument() const {
    const Token& t = peek();
    if (t.kind == TokenKind::kName) {
      static constexpr std::string_view kStop[] = {"else", "or", "and", "if", "is", "in", "not"};
      for (std::string_view w : kStop)
        if (t.text == w) return false;
      return true;
    }
    return t.kind == TokenKind::kString || t.kind == TokenKind::kInt ||
           t.kind == TokenKind::kFloat || at_op("[") || at_op("{");
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

std::unique_ptr<Template> parse_template(std::string_view source) {
  return Parser(tokenize(source, LexOptions{})).parse();
}

}  // namespace moeserve::jinja
