// One test per Jinja language feature chat templates use. Expected strings
// follow Python Jinja2 with trim_blocks and lstrip_blocks (what transformers
// uses).
#include <string>

#include "nlohmann/json.hpp"
#include "tokenizer/chat_template.h"
#include <gtest/gtest.h>

namespace moeserve {
namespace {

using nlohmann::ordered_json;

std::string render(const std::string& source,
                   const ordered_json& context = ordered_json::object()) {
  auto tmpl = ChatTemplate::parse(source);
  EXPECT_TRUE(tmpl.ok()) << tmpl.status();
  if (!tmpl.ok()) return "<parse error>";
  auto out = tmpl->render(context);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : "<render error: " + std::string(out.status().message()) + ">";
}

TEST(ChatTemplateFeatures, LiteralsAndArithmetic) {
  EXPECT_EQ(
      render(
          "{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}"),
      "7|9|3|-4|1|2");
  EXPECT_EQ(render("{{ 7 / 2 }}|{{ 4 / 2 }}|{{ 2 ** 10 }}|{{ 1.5 + 1 }}|{{ -3 }}|{{ 0.1 + 0.2 }}"),
            "3.5|2.0|1024|2.5|-3|0.30000000000000004");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none ~ true }}|{{ 'ab' * 3 }}|{{ [1] + [2, 3] }}"),
            "a1NoneTrue|ababab|[1, 2, 3]");
  EXPECT_EQ(render("{{ \"dq\" 'sq' }}|{{ 'esc\\n\\t\\'\\u00e9' }}"), "dqsq|esc\n\t'\xC3\xA9");
  EXPECT_EQ(
      render("{{ [1, 'a', none, true, 2.5] }}|{{ {'k': 'v', 'n': [1]} }}|{{ (1, 2)|length }}"),
      "[1, 'a', None, True, 2.5]|{'k': 'v', 'n': [1]}|2");
  EXPECT_EQ(render("{{ 1e3 }}|{{ 1.0e-7 }}|{{ 123456789.0 * 1e10 }}"),
            "1000.0|1e-07|1.23456789e+18");
}

TEST(ChatTemplateFeatures, ComparisonsAndLogic) {
  EXPECT_EQ(
      render("{{ 1 == 1.0 }}{{ 'a' != 'b' }}{{ 2 < 10 }}{{ 'b' > 'a' }}{{ 3 >= 3 }}{{ 3 <= 2 }}"),
      "TrueTrueTrueTrueTrueFalse");
  EXPECT_EQ(
      render("{{ 'x' in 'xyz' }}{{ 2 in [1, 2] }}{{ 'k' in {'k': 1} }}{{ 'q' not in 'xyz' }}"),
      "TrueTrueTrueTrue");
  EXPECT_EQ(
      render("{{ 0 or 'b' }}|{{ 'a' and 'b' }}|{{ '' and 'b' }}|{{ not [] }}|{{ not 1 and 2 }}"),
      "b|b||True|False");
  EXPECT_EQ(render("{{ 'y' if 1 > 0 else 'n' }}|{{ 'y' if [] else 'n' }}|{{ 'only' if false }}|"),
            "y|n||");
  EXPECT_EQ(render("{{ [1, 2] == [1, 2] }}{{ {'a': 1} == {'a': 1} }}{{ none == none }}"),
            "TrueTrueTrue");
}

TEST(ChatTemplateFeatures, AttributeSubscriptAndSlices) {
  const ordered_json ctx = {{"m", {{"role", "user"}, {"nums", {1, 2, 3, 4, 5}}}},
                            {"s", "h\xC3\xA9llo"}};
  EXPECT_EQ(
      render("{{ m.role }}|{{ m['role'] }}|{{ m.nums[0] }}|{{ m.nums[-1] }}|{{ m.nums.1 }}", ctx),
      "user|user|1|5|2");
  EXPECT_EQ(render("{{ m.nums[1:3] }}|{{ m.nums[::-1] }}|{{ m.nums[::2] }}|{{ m.nums[-2:] }}|{{ "
                   "m.nums[:-3] }}",
                   ctx),
            "[2, 3]|[5, 4, 3, 2, 1]|[1, 3, 5]|[4, 5]|[1, 2]");
  // Strings index by code point, like Python.
  EXPECT_EQ(render("{{ s[1] }}|{{ s[::-1] }}|{{ s[1:3] }}|{{ s|length }}", ctx),
            "\xC3\xA9|oll\xC3\xA9h|\xC3\xA9l|5");
  EXPECT_EQ(
      render("{{ m.missing is defined }}|{{ m.nums[10] is defined }}|{{ nothing is undefined }}",
             ctx),
      "False|False|True");
}

TEST(ChatTemplateFeatures, WhitespaceControlAndHfSettings) {
  // trim_blocks drops the newline after a block tag; lstrip_blocks drops the
  // indentation before it.
  EXPECT_EQ(render("{% if true %}\n  yes\n{% endif %}\nend"), "  yes\nend");
  EXPECT_EQ(render("<\n    {% if true %}\n    x\n    {% endif %}\n>"), "<\n    x\n>");
  EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(render("a \n {{- 'b' -}} \n c"), "abc");
  EXPECT_EQ(render("x  {%+ if true %}y{% endif %}"), "x  y");
  // Not at line start: lstrip_blocks leaves the spaces alone.
  EXPECT_EQ(render("a  {% if true %}b{% endif %}"), "a  b");
  // Comments vanish and also get trim/lstrip treatment.
  EXPECT_EQ(render("a{# comment #}b\n  {# own line #}\nc"), "ab\nc");
  EXPECT_EQ(render("a {#- trimmed -#} b"), "ab");
  // A single trailing newline is dropped (keep_trailing_newline=False).
  EXPECT_EQ(render("x\n"), "x");
  EXPECT_EQ(render("x\n\n"), "x\n");
  // `{{` output tags do not trim the newline after them.
  EXPECT_EQ(render("{{ 'a' }}\nb"), "a\nb");
}

TEST(ChatTemplateFeatures, IfElifElse) {
  const std::string src =
      "{% for x in [1, 2, 3, 4] %}{% if x == 1 %}one{% elif x == 2 %}two{% elif x == 3 %}three"
      "{% else %}other{% endif %},{% endfor %}";
  EXPECT_EQ(render(src), "one,two,three,other,");
}

TEST(ChatTemplateFeatures, ForLoopVariables) {
  EXPECT_EQ(
      render("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
             "{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}"),
      "1032TrueFalse3;2121FalseFalse3;3210FalseTrue3;");
  EXPECT_EQ(render("{% for x in [1, 2, 3] %}{{ loop.previtem }}-{{ loop.nextitem }} {% endfor %}"),
            "-2 1-3 2- ");
  // Nested loops: the inner loop's `loop` shadows the outer only inside it.
  EXPECT_EQ(
      render(
          "{% for a in [1, 2] %}{% for b in [1, 2, 3] %}{% endfor %}{{ loop.index }}{% endfor %}"),
      "12");
}

TEST(ChatTemplateFeatures, ForLoopUnpackFilterElseBreak) {
  const ordered_json ctx = {{"d", {{"b", 1}, {"a", 2}}}};
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", ctx), "b=1;a=2;");
  EXPECT_EQ(render("{% for k, v in d|items %}{{ k }}{{ v }}{% endfor %}", ctx), "b1a2");
  EXPECT_EQ(render("{% for k in d %}{{ k }}{% endfor %}", ctx), "ba");
  EXPECT_EQ(render("{% for x in range(10) if x is odd %}{{ x }}{{ '/' ~ loop.length if loop.last "
                   "}}{% endfor %}"),
            "13579/5");
  EXPECT_EQ(render("{% for x in [] %}no{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(
      render("{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
      "012");
  EXPECT_EQ(
      render(
          "{% for x in range(5) %}{% if x is even %}{% continue %}{% endif %}{{ x }}{% endfor %}"),
      "13");
  EXPECT_EQ(render("{% for x in range(2, 11, 4) %}{{ x }}{% endfor %}{% for x in range(3, 0, -1) "
                   "%}{{ x }}{% endfor %}"),
            "2610321");
}

TEST(ChatTemplateFeatures, SetScopingAndNamespace) {
  // A plain `set` inside a loop does not leak out; a namespace attribute does.
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1, 2] %}{% set x = 5 %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(
      render("{% set ns = namespace(n=0, s='') %}{% for i in [1, 2, 3] %}"
             "{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.n }}-{{ ns.s }}"),
      "6-123");
  EXPECT_EQ(render("{% if true %}{% set y = 'in-if' %}{% endif %}{{ y }}"), "in-if");
  EXPECT_EQ(render("{% set a, b = [1, 2] %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(render("{% set block %}captured {{ 1 + 1 }}{% endset %}[{{ block }}]"), "[captured 2]");
  EXPECT_EQ(render("{% set d = dict(a=1, b='x') %}{{ d.b }}{{ d['a'] }}"), "x1");
}

TEST(ChatTemplateFeatures, MacrosAndCallBlocks) {
  EXPECT_EQ(render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
                   "{{ greet('A') }} {{ greet('B', '?') }} {{ greet(punct='.', name='C') }}"),
            "Hi A! Hi B? Hi C.");
  EXPECT_EQ(render("{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}"
                   "{% call wrap('b') %}bold {{ 1 }}{% endcall %}"),
            "<b>bold 1</b>");
  EXPECT_EQ(
      render("{% macro each(items) %}{% for i in items %}{{ caller(i) }}{% endfor %}{% endmacro %}"
             "{% call(x) each([1, 2]) %}[{{ x }}]{% endcall %}"),
      "[1][2]");
  // Recursion within the depth limit works.
  EXPECT_EQ(render("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif "
                   "%}{% endmacro %}"
                   "{{ fact(5) }}"),
            "120");
}

TEST(ChatTemplateFeatures, StringFilters) {
  EXPECT_EQ(
      render("[{{ '  a b \n'|trim }}]|{{ 'xxhixx'|trim('x') }}|{{ 'Hi'|upper }}{{ 'Hi'|lower }}"),
      "[a b]|hi|HIhi");
  EXPECT_EQ(render("{{ 'hello world'|capitalize }}|{{ 'hello world'|title }}|{{ "
                   "'aXbXc'|replace('X', '-') }}"),
            "Hello world|Hello World|a-b-c");
  EXPECT_EQ(
      render("{{ 'abc'|length }}|{{ [1, 2]|length }}|{{ {'a': 1}|count }}|{{ 42|string ~ '!' }}"),
      "3|2|1|42!");
  EXPECT_EQ(render("{{ '12'|int + 1 }}|{{ '3.7'|int }}|{{ 'x'|int }}|{{ 'x'|int(7) }}|{{ 2.9|int "
                   "}}|{{ '1.5'|float }}"),
            "13|3|0|7|2|1.5");
  EXPECT_EQ(
      render(
          "{{ '<b>'|safe }}|{{ 'ab'|list }}|{{ 'abc'|first }}{{ 'abc'|last }}|{{ 'abc'|reverse }}"),
      "<b>|['a', 'b']|ac|cba");
  EXPECT_EQ(render("{{ 'a\nb\n\nc'|indent(2) }}|{{ 'x\ny'|indent(2, true) }}"),
            "a\n  b\n\n  c|  x\n  y");
}

TEST(ChatTemplateFeatures, ListFilters) {
  const ordered_json ctx = {{"tools",
                             {{{"name", "a"}, {"on", true}, {"f", {{"n", "x"}}}},
                              {{"name", "b"}, {"on", false}, {"f", {{"n", "y"}}}},
                              {{"name", "c"}, {"f", {{"n", "z"}}}}}}};
  EXPECT_EQ(render("{{ [1, 2, 3]|join(', ') }}|{{ ['a', 'b']|join }}|{{ tools|join('-', "
                   "attribute='name') }}",
                   ctx),
            "1, 2, 3|ab|a-b-c");
  EXPECT_EQ(render("{{ tools|selectattr('on')|map(attribute='name')|list }}", ctx), "['a']");
  EXPECT_EQ(render("{{ tools|rejectattr('on')|map(attribute='name')|join }}", ctx), "bc");
  EXPECT_EQ(
      render("{{ tools|selectattr('name', 'equalto', 'b')|map(attribute='f.n')|first }}", ctx),
      "y");
  EXPECT_EQ(render("{{ tools|selectattr('on', 'defined')|list|length }}", ctx), "2");
  EXPECT_EQ(render("{{ ['a', 'code', 'b']|reject('equalto', 'code')|join(', ') }}"), "a, b");
  EXPECT_EQ(render("{{ [1, none, 2]|select('none')|list }}|{{ [' a ', 'b ']|map('trim')|join }}"),
            "[None]|ab");
  EXPECT_EQ(
      render("{{ [3, 1, 2]|sort }}|{{ [3, 1, 2]|sort(reverse=true) }}|{{ [1, 1, 2]|unique|list }}"),
      "[1, 2, 3]|[3, 2, 1]|[1, 2]");
  EXPECT_EQ(render("{{ [1, 2]|first }}{{ [1, 2]|last }}|{{ []|first is undefined }}|{{ [1, "
                   "2]|reverse|list }}"),
            "12|True|[2, 1]");
  EXPECT_EQ(render("{{ missing|default('dflt') }}|{{ ''|default('dflt') }}|{{ ''|default('dflt', "
                   "true) }}|{{ none|d('x') }}"),
            "dflt||dflt|None");
}

TEST(ChatTemplateFeatures, ToJsonMatchesPythonJsonDumps) {
  const ordered_json ctx = {
      {"v",
       ordered_json::parse(
           R"({"b": 1, "a": [1, 2.5, "x\"y", null, true, {}], "u": "é\n\t\u0001", "e": []})")}};
  EXPECT_EQ(render("{{ v|tojson }}", ctx),
            "{\"b\": 1, \"a\": [1, 2.5, \"x\\\"y\", null, true, {}], \"u\": "
            "\"\xC3\xA9\\n\\t\\u0001\", \"e\": []}");
  EXPECT_EQ(render("{{ {'k': [1, {'z': none}], 'e': {}}|tojson(indent=2) }}"),
            "{\n  \"k\": [\n    1,\n    {\n      \"z\": null\n    }\n  ],\n  \"e\": {}\n}");
  EXPECT_EQ(render("{{ 'str'|tojson }}|{{ 1.0|tojson }}|{{ 3|tojson }}|{{ none|tojson }}"),
            "\"str\"|1.0|3|null");
}

TEST(ChatTemplateFeatures, Tests) {
  EXPECT_EQ(render("{{ none is none }}{{ 1 is none }}{{ 'a' is string }}{{ {} is mapping }}{{ [] "
                   "is mapping }}"),
            "TrueFalseTrueTrueFalse");
  EXPECT_EQ(
      render("{{ [] is iterable }}{{ 'a' is iterable }}{{ 1 is iterable }}{{ [] is sequence }}"),
      "TrueTrueFalseTrue");
  EXPECT_EQ(render("{{ 1 is number }}{{ 1.5 is number }}{{ '1' is number }}{{ true is boolean }}{{ "
                   "1 is boolean }}"),
            "TrueTrueFalseTrueFalse");
  EXPECT_EQ(
      render("{{ false is false }}{{ 0 is false }}{{ true is true }}{{ 3 is odd }}{{ 4 is even }}"),
      "TrueFalseTrueTrueTrue");
  EXPECT_EQ(
      render(
          "{{ 2 is equalto 2 }}{{ 2 is equalto(3) }}{{ 'a' is eq 'a' }}{{ 9 is divisibleby 3 }}"),
      "TrueFalseTrueTrue");
  EXPECT_EQ(render("{{ x is not defined }}{{ 1 is not none }}{{ not x is defined }}"),
            "TrueTrueTrue");
}

TEST(ChatTemplateFeatures, StringAndDictMethods) {
  EXPECT_EQ(render("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('bc') }}{{ "
                   "'abc'.startswith(('x', 'a')) }}"),
            "TrueTrueTrue");
  EXPECT_EQ(render("{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}"),
            "['a', 'b', '', 'c']|['a', 'b']|['a', 'b c']");
  EXPECT_EQ(
      render("[{{ '\n x \n'.strip() }}][{{ '\nx\n'.lstrip('\n') }}][{{ 'xyy'.rstrip('y') }}]"),
      "[x][x\n][x]");
  EXPECT_EQ(render("{{ 'aXa'.upper() }}{{ 'AxA'.lower() }}{{ 'aaa'.replace('a', 'b', 2) }}{{ "
                   "'hello'.title() }}"),
            "AXAaxabbaHello");
  const ordered_json ctx = {{"d", {{"x", 1}, {"y", nullptr}}}};
  EXPECT_EQ(render("{{ d.get('x') }}|{{ d.get('z') }}|{{ d.get('z', 5) }}|{{ d.keys()|list }}|{{ "
                   "d.values()|list }}",
                   ctx),
            "1|None|5|['x', 'y']|[1, None]");
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}", ctx), "x1yNone");
  EXPECT_EQ(render("{% set l = [1] %}{% set _ = l.append(2) %}{{ l }}"), "[1, 2]");
  // The Qwen3 reasoning split, exactly as the template writes it.
  const ordered_json msg = {{"c", "<think>\nwhy\n</think>\n\nanswer"}};
  EXPECT_EQ(render("{{ c.split('</think>')[-1].lstrip('\\n') }}|{{ "
                   "c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}",
                   msg),
            "answer|why");
}

TEST(ChatTemplateFeatures, FilterBlockAndGenerationTags) {
  EXPECT_EQ(render("{% filter upper %}abc {{ 'd' }}{% endfilter %}"), "ABC D");
  EXPECT_EQ(render("a{% generation %}b{% endgeneration %}c"), "abc");
}

TEST(ChatTemplateFeatures, ContextVariablesAndBuiltins) {
  const ordered_json ctx = {{"bos_token", "<s>"}, {"enable_thinking", false}, {"n", 3}};
  EXPECT_EQ(render("{{ bos_token }}{{ enable_thinking }}{{ n + 1 }}{{ undefined_var }}.", ctx),
            "<s>False4.");
  EXPECT_EQ(render("{{ range(3)|list }}{{ namespace(a=1).a }}"), "[0, 1, 2]1");
  EXPECT_EQ(render("{{ strftime_now('%Y')|length }}"), "4");
}

}  // namespace
}  // namespace moeserve
