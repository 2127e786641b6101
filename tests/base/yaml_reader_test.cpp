#include "base/yaml_reader.hpp"

#include <gtest/gtest.h>

#include <string>

namespace rvec {
namespace {

// The message load() refuses `text` with, or "" when it loads.
std::string refusal(const std::string& text) {
  try {
    YamlReader("r.yaml").load(text);
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

TEST(YamlReader, LoadsOneDocument) {
  const YAML::Node root = YamlReader("r.yaml").load("kind: merge\nweights: [0.5, 1]\nparams: {density: 0.2}\n");
  EXPECT_EQ(root["kind"].Scalar(), "merge");
  EXPECT_EQ(root["params"]["density"].Scalar(), "0.2");
  EXPECT_TRUE(YamlReader("r.yaml").load("").IsNull());
  EXPECT_EQ(refusal("---\nkind: merge\n...\n"), "");  // explicit markers around one document
}

// yaml-cpp kept the first of two equal keys (PyYAML, so mergekit, the last):
// `output: a` then `output: b` wrote to a without a word.
TEST(YamlReader, RefusesADuplicateKeyNamingBothLines) {
  EXPECT_EQ(refusal("kind: merge\noutput: a\noutput: b\n"), "r.yaml:3: duplicate key \"output\" (first on line 2)");
  EXPECT_EQ(refusal("variants:\n  - {name: x, params: {density: 0.2, density: 0.9}}\n"),
            "r.yaml:2: duplicate key \"density\" (first on line 2)");
  EXPECT_EQ(refusal("a: {b: 1}\nc: {b: 1}\n"), "");  // the same key in two mappings is fine
}

// A list as a key ended in "internal error" (yaml-cpp's bad conversion).
TEST(YamlReader, RefusesAKeyThatIsNotAWord) {
  EXPECT_EQ(refusal("kind: merge\n? [a, b]\n: 1\n"), "r.yaml:2: a key must be a plain word, not a list, mapping or null");
  EXPECT_EQ(refusal("~: 1\n"), "r.yaml:1: a key must be a plain word, not a list, mapping or null");
}

// Everything after `---` was silently ignored.
TEST(YamlReader, RefusesASecondDocument) {
  EXPECT_EQ(refusal("kind: merge\n---\nkind: extract\n"),
            "r.yaml:3: a second YAML document (after \"---\"): rvec reads one document per file");
}

TEST(YamlReader, RefusesBytesThatAreNotUtf8) {
  EXPECT_EQ(refusal("kind: merge\npre: models/p\xFFq\n"), "r.yaml:2: byte 25 is not valid UTF-8 (a YAML file is UTF-8 text)");
}

TEST(YamlReader, KeepsItsParseErrorsOnOneLine) {
  const std::string message = refusal(std::string("merge_method: ties\0\nbase_model: p\n", 33));
  EXPECT_NE(message.find("not valid YAML"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

// A variant's `weights: []` once fell back to the merge's weights.
TEST(YamlReader, AListOfNumbersIsNotEmpty) {
  const YamlReader y("r.yaml");
  EXPECT_EQ(y.numbers(y.load("weights: [0.5, 1]\n"), "weights"), (std::vector<double>{0.5, 1}));
  EXPECT_EQ(y.numbers(y.load("weights: 2\n"), "weights"), (std::vector<double>{2}));
  EXPECT_TRUE(y.numbers(y.load("other: 1\n"), "weights").empty());
  try {
    y.numbers(y.load("a: 1\nweights: []\n"), "weights");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "r.yaml:2: field \"weights\" is an empty list");
  }
}

// The message scalar<bool>() or text() refuses field "f" of `text` with, or "" with the value.
template <class Read>
std::string read_f(const std::string& text, Read read) {
  const YamlReader y("r.yaml");
  try {
    return "read " + read(y, y.load(text)["f"]);
  } catch (const Error& e) {
    return e.what();
  }
}

// yaml-cpp read `normalize: y` as true; PyYAML, so mergekit, reads y as text.
TEST(YamlReader, BooleansAreThoseOfPyYaml) {
  const auto boolean = [](const std::string& text) {
    return read_f(text, [](const YamlReader& y, const YAML::Node& n) {
      return std::string(y.scalar<bool>(n, "f", "true or false") ? "true" : "false");
    });
  };
  for (const char* yes : {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"}) {
    EXPECT_EQ(boolean(std::string("f: ") + yes), "read true") << yes;
  }
  for (const char* no : {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"}) {
    EXPECT_EQ(boolean(std::string("f: ") + no), "read false") << no;
  }
  EXPECT_EQ(boolean("f: !!bool yes"), "read true");
  for (const char* other : {"y", "Y", "n", "N", "tRUE", "1", "0", "'true'", "\"yes\"", "[true]", "!!str false"}) {
    EXPECT_EQ(boolean(std::string("f: ") + other), "r.yaml:1: field \"f\" must be true or false") << other;
  }
}

// `filter: 0` matched tensor names containing "0"; PyYAML reads 0 as a
// number, which mergekit's filter (a string) refuses.
TEST(YamlReader, TextIsWhatPyYamlReadsAsText) {
  const auto text = [](const std::string& t) {
    return read_f(t, [](const YamlReader& y, const YAML::Node& n) { return y.text(n, "f", "text"); });
  };
  EXPECT_EQ(text("f: mlp"), "read mlp");
  EXPECT_EQ(text("f: '0'"), "read 0");
  EXPECT_EQ(text("f: \"true\""), "read true");
  EXPECT_EQ(text("f: layers.0"), "read layers.0");
  // PyYAML's patterns, not yaml-cpp's: 1e3 (no dot) and 1.2.3 are text, 0x1F, 1_000, 1:30 and .5 numbers.
  EXPECT_EQ(text("f: 1e3"), "read 1e3");
  EXPECT_EQ(text("f: 1.2.3"), "read 1.2.3");
  EXPECT_EQ(text("f: y"), "read y");
  for (const char* other : {"0x1F", "1_000", "1:30", ".5", "-.inf", ".nan", "010", "0b11", "+3", "1.5e+3", "2001-12-14",
                            "2001-12-14t21:59:43.10-05:00"}) {
    EXPECT_NE(text(std::string("f: ") + other).find("YAML reads"), std::string::npos) << other;
  }
  // PyYAML 6.0's float pattern wants a digit after a leading dot; !!str is text, other tags are not.
  EXPECT_EQ(text("f: ._"), "read ._");
  EXPECT_EQ(text("f: !!str 0"), "read 0");
  EXPECT_EQ(text("f: !!int 0"), "r.yaml:1: field \"f\" must be text");
  EXPECT_EQ(text("f: 0"), "r.yaml:1: field \"f\" must be text, and YAML reads 0 as a number, a boolean or a date: quote it (\"0\")");
  EXPECT_EQ(text("f: 1.5"),
            "r.yaml:1: field \"f\" must be text, and YAML reads 1.5 as a number, a boolean or a date: quote it (\"1.5\")");
  EXPECT_EQ(text("f: on"), "r.yaml:1: field \"f\" must be text, and YAML reads on as a number, a boolean or a date: quote it (\"on\")");
  EXPECT_EQ(text("f: [a]"), "r.yaml:1: field \"f\" must be text");
}

// An alias bomb: nine levels of ten aliases each would be a billion nodes.
TEST(YamlReader, StopsAnAliasBombInsteadOfWalkingIt) {
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 9; ++i) {
    const std::string p = "*a" + std::to_string(i - 1);
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + p;
    for (int j = 1; j < 10; ++j) text += ", " + p;
    text += "]\n";
  }
  EXPECT_NE(refusal(text).find("more than 100000 YAML nodes (aliases expanding?)"), std::string::npos) << refusal(text);
}

}  // namespace
}  // namespace rvec
