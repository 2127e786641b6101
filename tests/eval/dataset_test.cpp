#include "eval/dataset.hpp"

#include <gtest/gtest.h>

#include "base/error.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

using test::TempDir;
using test::write_file;

void expect_error(const std::string& path, const DatasetFields& fields, const std::string& needle) {
  try {
    load_dataset(path, fields);
    ADD_FAILURE() << "expected an error with " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Dataset, ReadsAimeStyleJsonl) {
  TempDir dir;
  write_file(dir / "aime.jsonl",
             "{\"id\": \"2024-I-1\", \"problem\": \"Find x.\", \"answer\": \"025\", \"url\": \"u\"}\n\n"
             "{\"id\": \"2024-I-2\", \"problem\": \"Find y.\", \"answer\": 204}\n");
  const auto d = load_dataset((dir / "aime.jsonl").string(), {});
  ASSERT_EQ(d.problems.size(), 2u);
  EXPECT_EQ(d.problems[0].id, "2024-I-1");
  EXPECT_EQ(d.problems[0].answer, "025");
  EXPECT_EQ(d.problems[1].answer, "204");
  EXPECT_EQ(d.kind, TaskKind::kInteger);
}

TEST(Dataset, IntegerAnswersStayExactPast2To63) {
  TempDir dir;
  write_file(dir / "big.jsonl", "{\"id\": \"1\", \"problem\": \"p\", \"answer\": 18446744073709551615}\n");
  EXPECT_EQ(load_dataset((dir / "big.jsonl").string(), {}).problems[0].answer, "18446744073709551615");  // not -1
}

TEST(Dataset, ReadsHeaderlessMgsmTsvAndJsonArrays) {
  TempDir dir;
  write_file(dir / "mgsm.tsv", "リンゴが\"3個\"あります。\t3\n太郎は1,000円\t1,000\n");
  const auto d = load_dataset((dir / "mgsm.tsv").string(), {});
  ASSERT_EQ(d.problems.size(), 2u);
  EXPECT_EQ(d.problems[0].question, "リンゴが\"3個\"あります。");
  EXPECT_EQ(d.problems[1].answer, "1,000");
  EXPECT_EQ(d.problems[1].id, "2");
  write_file(dir / "a.json", R"([{"question": "q1", "answer": "1"}, {"question": "q2", "answer": "2"}])");
  EXPECT_EQ(load_dataset((dir / "a.json").string(), {}).problems.size(), 2u);
}

TEST(Dataset, ReadsMultipleChoiceCsvWithQuotes) {
  TempDir dir;
  write_file(dir / "jmmlu.csv",
             "question,A,B,C,D,answer\n\"日本の首都は、どこ？\",大阪,東京,\"京都, 奈良\",札幌,B\n");
  DatasetFields fields;
  fields.choices = {"A", "B", "C", "D"};
  const auto d = load_dataset((dir / "jmmlu.csv").string(), fields);
  ASSERT_EQ(d.problems.size(), 1u);
  EXPECT_EQ(d.kind, TaskKind::kChoice);
  EXPECT_EQ(d.problems[0].question, "日本の首都は、どこ？\nA. 大阪\nB. 東京\nC. 京都, 奈良\nD. 札幌");
  EXPECT_EQ(d.problems[0].answer, "B");
}

// JCommonsenseQA-style rows: one field holds the options as a list.
TEST(Dataset, OneChoiceFieldMayHoldTheListOfOptions) {
  TempDir dir;
  write_file(dir / "jcqa.jsonl", R"({"question": "q", "choices": ["犬", "猫", 3], "label": 1})" "\n");
  DatasetFields fields;
  fields.choices = {"choices"};
  fields.answer = "label";
  const auto d = load_dataset((dir / "jcqa.jsonl").string(), fields);
  ASSERT_EQ(d.problems.size(), 1u);
  EXPECT_EQ(d.problems[0].options, (std::vector<std::string>{"犬", "猫", "3"}));
  EXPECT_EQ(d.problems[0].question, "q\nA. 犬\nB. 猫\nC. 3");
  write_file(dir / "one.jsonl", R"({"question": "q", "choices": ["only"], "label": 0})" "\n");
  expect_error((dir / "one.jsonl").string(), fields, "one.jsonl:1: a multiple-choice row needs 2 to 5 options");
  write_file(dir / "six.jsonl", R"({"question": "q", "choices": ["1", "2", "3", "4", "5", "6"], "label": 0})" "\n");
  expect_error((dir / "six.jsonl").string(), fields, "six.jsonl:1: a multiple-choice row needs 2 to 5 options");
}

TEST(Dataset, BadFilesNameTheLine) {
  TempDir dir;
  write_file(dir / "bad.jsonl", "{\"problem\": \"a\", \"answer\": \"1\"}\n{\"problem\": \"b\", \"answer\": \"2\"}\n{oops\n");
  expect_error((dir / "bad.jsonl").string(), {}, "bad.jsonl:3");
  write_file(dir / "noanswer.jsonl", "{\"problem\": \"a\"}\n");
  expect_error((dir / "noanswer.jsonl").string(), {}, "noanswer.jsonl:1: no answer in field \"answer\"");
  write_file(dir / "dup.jsonl", "{\"id\": 1, \"problem\": \"a\", \"answer\": \"1\"}\n{\"id\": 1, \"problem\": \"b\", \"answer\": \"2\"}\n");
  expect_error((dir / "dup.jsonl").string(), {}, "dup.jsonl:2: id \"1\" appears twice");
  write_file(dir / "ragged.csv", "question,answer\nq,1,extra\n");
  expect_error((dir / "ragged.csv").string(), {}, "ragged.csv:2: 3 fields, the header has 2");
  write_file(dir / "data.txt", "x");
  expect_error((dir / "data.txt").string(), {}, "unknown data set format");
  DatasetFields custom;
  custom.question = "prompt";
  write_file(dir / "custom.jsonl", "{\"problem\": \"a\", \"answer\": \"1\"}\n");
  expect_error((dir / "custom.jsonl").string(), custom, "no question in field \"prompt\"");
}

}  // namespace
}  // namespace rvec
