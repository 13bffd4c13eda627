// Error type used inside the Jinja interpreter. It never leaves the module:
// ChatTemplate::parse/render catch it and turn it into a Status with
// "chat template:<line>:<col>: <message>".
#pragma once

#include <exception>
#include <string>
#include <utility>

namespace moeserve::jinja {

// 1-based position in the template source; line 0 means "not known yet".
struct SourceLoc {
  int line = 0;
  int col = 0;
};

class JinjaError : public std::exception {
 public:
  JinjaError(SourceLoc loc, std::string message) : loc_(loc), message_(std::move(message)) {}
  explicit JinjaError(std::string message) : message_(std::move(message)) {}

  const char* what() const noexcept override { return message_.c_str(); }
  const std::string& message() const { return message_; }
  SourceLoc loc() const { return loc_; }
  bool has_loc() const { return loc_.line > 0; }
  void set_loc(SourceLoc loc) { loc_ = loc; }

 private:
  SourceLoc loc_;
  std::string message_;
};

// Throws a JinjaError without a location; the interpreter attaches the
// location of the expression being evaluated.
[[noreturn]] inline void fail(std::string message) { throw JinjaError(std::move(message)); }
[[noreturn]] inline void fail_at(SourceLoc loc, std::string message) {
  throw JinjaError(loc, std::move(message));
}

}  // namespace moeserve::jinja
