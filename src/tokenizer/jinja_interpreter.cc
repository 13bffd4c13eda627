#include "tokenizer/jinja_interpreter.h"

#include <memory>
#include <unordered_map>

#include "tokenizer/jinja_builtins.h"
#include "tokenizer/jinja_filters.h"
#include "tokenizer/jinja_methods.h"
#include "tokenizer/jinja_operators.h"

namespace moeserve::jinja {
namespace {

// One variable scope. For-loop iterations and macro calls get a child frame,
// so their `set`s do not leak out (Jinja's scoping rule; hence namespace()).
struct Frame {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Frame> parent;
};
using FramePtr = std::shared_ptr<Frame>;

enum class Flow { kNormal, kBreak, kContinue };

class Interpreter {
 public:
  explicit Interpreter(Budget& budget) : budget_(budget) {}

  std::string run(const Template& tmpl, const Value& context) {
    auto builtins = std::make_shared<Frame>();
    for (auto& [name, fn] : make_builtins(budget_)) builtins->vars.emplace(name, std::move(fn));
    auto root = std::make_shared<Frame>();
    root->parent = builtins;
    for (const auto& [key, value] : context.as_dict().entries()) root->vars[key] = value;
    std::string out;
    exec_body(tmpl.body, root, out);
    return out;
  }

 private:
  // Attaches the node's location to errors raised without one.
  template <typename F>
  auto at(SourceLoc loc, F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (JinjaError& e) {
      if (!e.has_loc()) e.set_loc(loc);
      throw;
    }
  }

  void append(std::string& out, std::string_view s) {
    out += s;
    budget_.check_size(out.size());
  }

  static const Value* find_var(const FramePtr& frame, const std::string& name) {
    for (const Frame* f = frame.get(); f != nullptr; f = f->parent.get()) {
      const auto it = f->vars.find(name);
      if (it != f->vars.end()) return &it->second;
    }
    return nullptr;
  }

  // ---- statements ----------------------------------------------------------

  Flow exec_body(const Body& body, const FramePtr& frame, std::string& out) {
    for (const StmtPtr& stmt : body) {
      const Flow flow = at(stmt->loc, [&] { return exec(*stmt, frame, out); });
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  Flow exec(const Stmt& s, const FramePtr& frame, std::string& out) {
    budget_.charge();
    switch (s.kind) {
      case StmtKind::kText: append(out, s.text); return Flow::kNormal;
      case StmtKind::kOutput: {
        const Value v = eval(*s.expr, frame);
        if (v.is_string())
          append(out, v.as_string());
        else
          append(out, to_str(v, budget_.max_bytes));
        return Flow::kNormal;
      }
      case StmtKind::kIf:
        for (size_t i = 0; i < s.conditions.size(); ++i) {
          if (truthy(eval(*s.conditions[i], frame))) return exec_body(s.bodies[i], frame, out);
        }
        return exec_body(s.else_body, frame, out);
      case StmtKind::kFor: exec_for(s, frame, out); return Flow::kNormal;
      case StmtKind::kSet: exec_set(s, frame); return Flow::kNormal;
      case StmtKind::kMacro: define_macro(s, frame); return Flow::kNormal;
      case StmtKind::kCallBlock: exec_call_block(s, frame, out); return Flow::kNormal;
      case StmtKind::kFilterBlock: {
        std::string captured;
        exec_body(s.body, frame, captured);
        append(out, to_str(apply_filter_chain(*s.expr, Value(std::move(captured)), frame),
                           budget_.max_bytes));
        return Flow::kNormal;
      }
      case StmtKind::kBreak: return Flow::kBreak;
      case StmtKind::kContinue: return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  void bind_targets(Frame& f, const std::vector<std::string>& targets, const Value& item) {
    if (targets.size() == 1) {
      f.vars[targets[0]] = item;
      return;
    }
    if (!item.is_list() || item.as_list().size() != targets.size()) {
      fail("cannot unpack " + std::string(type_name(item)) + " into " +
           std::to_string(targets.size()) + " variables");
    }
    for (size_t i = 0; i < targets.size(); ++i) f.vars[targets[i]] = item.as_list()[i];
  }

  void exec_for(const Stmt& s, const FramePtr& frame, std::string& out) {
    ValueList items = iterate(eval(*s.expr, frame));
    if (s.cond) {
      ValueList kept;
      auto probe = std::make_shared<Frame>();
      probe->parent = frame;
      for (Value& item : items) {
        budget_.charge();
        bind_targets(*probe, s.targets, item);
        if (truthy(eval(*s.cond, probe))) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    const auto n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      budget_.charge();
      auto iteration = std::make_shared<Frame>();
      iteration->parent = frame;
      const auto u = static_cast<size_t>(i);
      ValueDict loop;
      loop.set("index", Value(i + 1));
      loop.set("index0", Value(i));
      loop.set("revindex", Value(n - i));
      loop.set("revindex0", Value(n - i - 1));
      loop.set("first", Value(i == 0));
      loop.set("last", Value(i == n - 1));
      loop.set("length", Value(n));
      loop.set("previtem", i > 0 ? items[u - 1] : Value());
      loop.set("nextitem", i + 1 < n ? items[u + 1] : Value());
      iteration->vars["loop"] = Value(std::move(loop));
      bind_targets(*iteration, s.targets, items[u]);
      if (exec_body(s.body, iteration, out) == Flow::kBreak) break;
    }
    if (n == 0) exec_body(s.else_body, frame, out);
  }

  void exec_set(const Stmt& s, const FramePtr& frame) {
    Value value;
    if (s.expr) {
      value = eval(*s.expr, frame);
    } else {
      std::string captured;
      exec_body(s.body, frame, captured);
      value = Value(std::move(captured));
    }
    if (!s.name.empty()) {
      const Value* target = find_var(frame, s.targets[0]);
      if (target == nullptr || !target->is_dict() || !target->as_dict().is_namespace) {
        fail("cannot assign attribute '" + s.name + "': '" + s.targets[0] + "' is not a namespace");
      }
      budget_.mutated.push_back(*target);
      target->as_dict().set(s.name, std::move(value));
      return;
    }
    bind_targets(*frame, s.targets, value);
  }

  // ---- macros --------------------------------------------------------------

  void define_macro(const Stmt& s, const FramePtr& frame) {
    // A weak reference: the macro is stored in the frame it closes over.
    std::weak_ptr<Frame> closure = frame;
    auto callable = std::make_shared<Callable>();
    callable->name = s.name;
    callable->fn = [this, &s, closure](const CallArgs& args) {
      FramePtr parent = closure.lock();
      if (!parent) fail("macro '" + s.name + "' called outside its scope");
      return call_macro(s, parent, args);
    };
    frame->vars[s.name] = Value(std::shared_ptr<const Callable>(std::move(callable)));
  }

  Value call_macro(const Stmt& macro, const FramePtr& parent, const CallArgs& args) {
    if (budget_.call_depth >= budget_.max_call_depth) {
      fail("recursion depth limit exceeded (" + std::to_string(budget_.max_call_depth) +
           " nested macro calls)");
    }
    struct DepthGuard {
      int& depth;
      explicit DepthGuard(int& d) : depth(d) { ++depth; }
      ~DepthGuard() { --depth; }
    } guard(budget_.call_depth);
    if (args.positional.size() > macro.params.size()) {
      fail("macro '" + macro.name + "' takes " + std::to_string(macro.params.size()) +
           " arguments, got " + std::to_string(args.positional.size()));
    }
    auto frame = std::make_shared<Frame>();
    frame->parent = parent;
    for (const auto& [key, value] : args.keyword) {
      bool known = key == "caller";
      for (const MacroParam& p : macro.params) known = known || p.name == key;
      if (!known) fail("macro '" + macro.name + "' has no argument '" + key + "'");
      frame->vars[key] = value;
    }
    for (size_t i = 0; i < macro.params.size(); ++i) {
      const MacroParam& p = macro.params[i];
      if (i < args.positional.size()) {
        frame->vars[p.name] = args.positional[i];
      } else if (frame->vars.count(p.name) == 0) {
        frame->vars[p.name] = p.default_value ? eval(*p.default_value, frame) : Value();
      }
    }
    std::string out;
    exec_body(macro.body, frame, out);
    return Value(std::move(out));
  }

  void exec_call_block(const Stmt& s, const FramePtr& frame, std::string& out) {
    const Expr& call = *s.expr;
    const Value callee = eval(*call.object, frame);
    if (!callee.is_callable()) fail("call block needs a macro");
    CallArgs args = eval_args(call, frame);
    auto caller = std::make_shared<Callable>();
    caller->name = "caller";
    caller->fn = [this, &s, frame](const CallArgs& caller_args) {
      auto body_frame = std::make_shared<Frame>();
      body_frame->parent = frame;
      for (size_t i = 0; i < s.params.size(); ++i) {
        const MacroParam& p = s.params[i];
        const Value* v = caller_args.get(i, p.name);
        body_frame->vars[p.name] = v                 ? *v
                                   : p.default_value ? eval(*p.default_value, body_frame)
                                                     : Value();
      }
      std::string body_out;
      exec_body(s.body, body_frame, body_out);
      return Value(std::move(body_out));
    };
    args.keyword.emplace_back("caller", Value(std::shared_ptr<const Callable>(std::move(caller))));
    budget_.charge();
    append(out, to_str(callee.as_callable().fn(args), budget_.max_bytes));
  }

  // ---- expressions ---------------------------------------------------------

  CallArgs eval_args(const Expr& e, const FramePtr& frame) {
    CallArgs args;
    for (const ExprPtr& a : e.items) args.positional.push_back(eval(*a, frame));
    for (const auto& [key, a] : e.kwargs) args.keyword.emplace_back(key, eval(*a, frame));
    return args;
  }

  // `{% filter a | b %}`: the innermost filter has no operand; `input` fills it.
  Value apply_filter_chain(const Expr& e, Value input, const FramePtr& frame) {
    Value operand = e.object ? apply_filter_chain(*e.object, std::move(input), frame) : input;
    return at(e.loc, [&] { return apply_filter(e.name, operand, eval_args(e, frame), budget_); });
  }

  Value eval(const Expr& e, const FramePtr& frame) {
    return at(e.loc, [&] { return eval_inner(e, frame); });
  }

  Value eval_inner(const Expr& e, const FramePtr& frame) {
    switch (e.kind) {
      case ExprKind::kLiteral: return e.value;
      case ExprKind::kName: {
        const Value* v = find_var(frame, e.name);
        return v ? *v : Value();
      }
      case ExprKind::kList:
      case ExprKind::kTuple: {
        ValueList items;
        for (const ExprPtr& item : e.items) items.push_back(eval(*item, frame));
        return Value(std::move(items));
      }
      case ExprKind::kDict: {
        ValueDict dict;
        for (size_t i = 0; i < e.keys.size(); ++i) {
          const Value key = eval(*e.keys[i], frame);
          if (!key.is_string()) fail("dict keys must be strings");
          dict.set(key.as_string(), eval(*e.items[i], frame));
        }
        return Value(std::move(dict));
      }
      case ExprKind::kGetAttr: return get_attr(eval(*e.object, frame), e.name);
      case ExprKind::kGetItem: return get_item(eval(*e.object, frame), eval(*e.right, frame));
      case ExprKind::kSlice: {
        const Value object = eval(*e.object, frame);
        const Value start = e.right ? eval(*e.right, frame) : Value::none();
        const Value stop = e.third ? eval(*e.third, frame) : Value::none();
        const Value step = e.fourth ? eval(*e.fourth, frame) : Value::none();
        return slice(object, start, stop, step);
      }
      case ExprKind::kCall: return eval_call(e, frame);
      case ExprKind::kFilter:
        return apply_filter(e.name, eval(*e.object, frame), eval_args(e, frame), budget_);
      case ExprKind::kTest: {
        const bool result = apply_test(e.name, eval(*e.object, frame), eval_args(e, frame));
        return Value(result != e.negated);
      }
      case ExprKind::kUnary: return unary_op(e.name, eval(*e.object, frame));
      case ExprKind::kBinary:
        return binary_op(e.name, eval(*e.object, frame), eval(*e.right, frame), budget_);
      case ExprKind::kAnd: {
        Value left = eval(*e.object, frame);
        return truthy(left) ? eval(*e.right, frame) : left;
      }
      case ExprKind::kOr: {
        Value left = eval(*e.object, frame);
        return truthy(left) ? left : eval(*e.right, frame);
      }
      case ExprKind::kTernary:
        if (truthy(eval(*e.object, frame))) return eval(*e.right, frame);
        return e.third ? eval(*e.third, frame) : Value();
    }
    return Value();
  }

  Value eval_call(const Expr& e, const FramePtr& frame) {
    Value callee;
    std::string callee_name;
    if (e.object->kind == ExprKind::kGetAttr) {
      const Value object = eval(*e.object->object, frame);
      callee_name = e.object->name;
      const CallArgs args = eval_args(e, frame);
      Value result;
      if (call_method(object, callee_name, args, budget_, &result)) return result;
      callee = get_attr(object, callee_name);
      if (!callee.is_callable()) {
        fail("'" + std::string(type_name(object)) + "' has no method '" + callee_name + "'");
      }
      budget_.charge();
      return callee.as_callable().fn(args);
    }
    callee = eval(*e.object, frame);
    if (e.object->kind == ExprKind::kName) callee_name = e.object->name;
    if (!callee.is_callable()) {
      if (callee.is_undefined() && !callee_name.empty()) fail("'" + callee_name + "' is undefined");
      fail("'" + (callee_name.empty() ? std::string(type_name(callee)) : callee_name) +
           "' is not callable");
    }
    const CallArgs args = eval_args(e, frame);
    budget_.charge();
    return callee.as_callable().fn(args);
  }

  Budget& budget_;
};

}  // namespace

std::string render(const Template& tmpl, const Value& context, Budget& budget) {
  struct CycleBreaker {
    Budget& budget;
    ~CycleBreaker() {
      for (Value& v : budget.mutated) {
        if (v.is_list()) v.as_list().clear();
        if (v.is_dict()) v.as_dict() = ValueDict();
      }
      budget.mutated.clear();
    }
  } breaker{budget};
  return Interpreter(budget).run(tmpl, context);
}

}  // namespace moeserve::jinja
