// UTF-8 aware helpers implementing Python str semantics (indexes count code
// points, strip()/split() use Python's whitespace set).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moeserve::jinja {

// Byte offsets of each code point start, plus s.size() at the end.
std::vector<size_t> code_point_offsets(std::string_view s);
int64_t code_point_length(std::string_view s);
// Decodes the code point at `pos`, advancing it; invalid bytes decode as
// themselves (one byte each).
uint32_t decode_code_point(std::string_view s, size_t& pos);
void append_code_point(std::string& out, uint32_t cp);
bool is_python_space(uint32_t cp);

std::string py_strip(std::string_view s, const std::optional<std::string>& chars, bool left,
                     bool right);
// Python str.split(sep, maxsplit); no sep splits on runs of whitespace.
std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep,
                                  int64_t maxsplit);
// Throws JinjaError (size limit) once the result would exceed max_bytes.
std::string py_replace(std::string_view s, std::string_view from, std::string_view to,
                       int64_t count, size_t max_bytes);
std::string ascii_upper(std::string_view s);
std::string ascii_lower(std::string_view s);
std::string py_capitalize(std::string_view s);
std::string py_title(std::string_view s);
// Python string escape for repr(): quotes with ' unless the text has ' and no ".
std::string py_repr_string(std::string_view s);
// JSON string literal as json.dumps(ensure_ascii=False) writes it.
void append_json_string(std::string& out, std::string_view s);

}  // namespace moeserve::jinja
