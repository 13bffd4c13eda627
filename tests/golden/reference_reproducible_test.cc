// Regenerates the tiny checkpoints and their goldens with the Python reference
// (tests/reference/make_checkpoints.py + make_goldens.py, both with --out DIR) into a
// temporary directory and checks that every file is byte-identical to the committed
// tests/data/tiny/. Skipped when /usr/bin/python3 has no torch.

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>
#include <sys/wait.h>

namespace moeserve {
namespace {

namespace fs = std::filesystem;

constexpr char kPython[] = "/usr/bin/python3";

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += "'";
  return out;
}

// Runs `cmd` through the shell; returns its exit status (-1 if it did not exit normally).
int RunShell(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  if (rc == -1 || !WIFEXITED(rc)) return -1;
  return WEXITSTATUS(rc);
}

bool ReadFile(const fs::path& p, std::string* out) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return false;
  out->assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return !f.bad();
}

// Regular files below `root`, as sorted paths relative to it.
std::set<std::string> ListFiles(const fs::path& root) {
  std::set<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_regular_file()) files.insert(fs::relative(e.path(), root).generic_string());
  }
  return files;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "moeserve_ref_XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) != nullptr) path_ = buf.data();
  }
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(ReferenceReproducible, RegeneratedTinyCheckpointsAreByteIdentical) {
  const std::string probe = std::string(kPython) + " -c 'import torch, numpy' >/dev/null 2>&1";
  if (RunShell(probe) != 0) {
    GTEST_SKIP() << kPython << " cannot import torch/numpy; the Python reference "
                 << "(tests/reference/) cannot run here";
  }

  const fs::path src = MOESERVE_SOURCE_DIR;
  const fs::path committed = src / "tests" / "data" / "tiny";
  ASSERT_TRUE(fs::is_directory(committed)) << committed;

  TempDir tmp;
  ASSERT_FALSE(tmp.path().empty()) << "mkdtemp failed";
  const fs::path out = tmp.path() / "tiny";
  const fs::path log = tmp.path() / "regen.log";
  const fs::path ref = src / "tests" / "reference";
  const std::string cmd =
      std::string(kPython) + " " + ShellQuote((ref / "make_checkpoints.py").string()) + " --out " +
      ShellQuote(out.string()) + " > " + ShellQuote(log.string()) + " 2>&1 && " + kPython + " " +
      ShellQuote((ref / "make_goldens.py").string()) + " --out " + ShellQuote(out.string()) +
      " >> " + ShellQuote(log.string()) + " 2>&1";
  const int rc = RunShell(cmd);
  if (rc != 0) {
    std::string text;
    ReadFile(log, &text);
    FAIL() << "regeneration failed (exit " << rc << "): " << cmd << "\n" << text;
  }

  std::set<std::string> want = ListFiles(committed);
  // tokenizer_512/ comes from tests/reference/make_tokenizer.py, not from these scripts.
  std::erase_if(want, [](const std::string& f) { return f.starts_with("tokenizer_512/"); });
  const std::set<std::string> got = ListFiles(out);
  for (const auto& f : want) {
    if (!got.count(f)) ADD_FAILURE() << "tests/data/tiny/" << f << " was not regenerated";
  }
  for (const auto& f : got) {
    if (!want.count(f))
      ADD_FAILURE() << "regeneration wrote " << f << ", absent from tests/data/tiny/";
  }
  int compared = 0;
  for (const auto& f : want) {
    if (!got.count(f)) continue;
    std::string a, b;
    ASSERT_TRUE(ReadFile(committed / f, &a)) << committed / f;
    ASSERT_TRUE(ReadFile(out / f, &b)) << out / f;
    ++compared;
    if (a == b) continue;
    const auto mismatch = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
    ADD_FAILURE() << "tests/data/tiny/" << f << " differs from the regenerated file (" << a.size()
                  << " vs " << b.size() << " bytes, first difference at byte "
                  << (mismatch.first - a.begin()) << ")";
  }
  EXPECT_GT(compared, 0);
}

}  // namespace
}  // namespace moeserve
