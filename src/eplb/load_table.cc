/*************************************************************************
 * epcomm: load table parser (see load_table.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "eplb/load_table.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace ep {
namespace eplb {
namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && isspace((unsigned char)s[b])) b++;
  while (e > b && isspace((unsigned char)s[e - 1])) e--;
  return s.substr(b, e - b);
}

/* A whole token as a finite double. */
bool parseNumber(const std::string& tok, double* v) {
  if (tok.empty()) return false;
  errno = 0;
  char* end = nullptr;
  *v = strtod(tok.c_str(), &end);
  return end == tok.c_str() + tok.size() && errno != ERANGE && std::isfinite(*v);
}

std::string quote(const std::string& s) {
  std::string q = s.size() > 40 ? s.substr(0, 40) + "..." : s;
  return "'" + q + "'";
}

/* Appends one row, checking it has as many values as the first. */
bool addRow(const std::vector<double>& row, const std::string& where, LoadTable* t, std::string* error) {
  if (row.empty()) {
    *error = where + ": empty row (a layer needs one load per expert)";
    return false;
  }
  if (t->layers == 0) {
    t->experts = (int)row.size();
  } else if ((int)row.size() != t->experts) {
    *error = where + ": ragged row with " + std::to_string(row.size()) + " values, but the first row has " +
             std::to_string(t->experts) + " (every layer needs one load per expert)";
    return false;
  }
  t->values.insert(t->values.end(), row.begin(), row.end());
  t->layers++;
  return true;
}

bool parseCsv(const std::string& text, LoadTable* t, std::string* error) {
  std::istringstream in(text);
  std::string line;
  int lineNo = 0;
  bool sawContent = false;
  while (std::getline(in, line)) {
    lineNo++;
    std::string l = trim(line);
    if (l.empty() || l[0] == '#') continue;
    std::vector<std::string> fields;
    size_t start = 0;
    for (;;) {
      size_t comma = l.find(',', start);
      fields.push_back(trim(l.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (fields.size() > 1 && fields.back().empty()) fields.pop_back();  // tolerate a trailing comma
    std::vector<double> row;
    bool anyNumber = false;
    std::string bad;
    size_t badCol = 0;
    for (size_t i = 0; i < fields.size(); i++) {
      double v;
      if (parseNumber(fields[i], &v)) {
        row.push_back(v);
        anyNumber = true;
      } else if (bad.empty() && badCol == 0) {
        bad = fields[i];
        badCol = i + 1;
      }
    }
    if (!sawContent && !anyNumber) {  // a header line
      sawContent = true;
      continue;
    }
    sawContent = true;
    if (badCol != 0) {
      *error = "line " + std::to_string(lineNo) + ", column " + std::to_string(badCol) + ": " +
               (bad.empty() ? std::string("empty field") : quote(bad) + " is not a finite number");
      return false;
    }
    if (!addRow(row, "line " + std::to_string(lineNo), t, error)) return false;
  }
  if (t->layers == 0) {
    *error = "no data rows (expected one line of comma-separated loads per layer)";
    return false;
  }
  return true;
}

class JsonReader {
 public:
  JsonReader(const std::string& s) : s_(s) {}

  bool parse(LoadTable* t, std::string* error) {
    skipWs();
    bool ok = false;
    if (peek() == '[') {
      ok = table(t);
    } else if (peek() == '{') {
      ok = objectWithTable(t);
    } else {
      fail("expected '[' (an array of layers) or '{' (an object with \"loads\")");
    }
    if (ok) {
      skipWs();
      if (pos_ != s_.size()) ok = fail("unexpected text after the table");
    }
    if (!ok) *error = err_;
    return ok;
  }

 private:
  const std::string& s_;
  size_t pos_ = 0;
  std::string err_;

  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skipWs() {
    while (pos_ < s_.size() && isspace((unsigned char)s_[pos_])) pos_++;
  }
  int line() const {
    int l = 1;
    for (size_t i = 0; i < pos_ && i < s_.size(); i++) l += s_[i] == '\n';
    return l;
  }
  bool fail(const std::string& what) {
    if (err_.empty()) err_ = "line " + std::to_string(line()) + ": " + what;
    return false;
  }
  bool expect(char c) {
    skipWs();
    if (peek() != c) return fail(std::string("expected '") + c + "', found " + found());
    pos_++;
    return true;
  }
  std::string found() const {
    if (pos_ >= s_.size()) return "end of input";
    size_t e = pos_;
    while (e < s_.size() && e - pos_ < 20 && !strchr(",]}\n", s_[e])) e++;
    return quote(s_.substr(pos_, std::max<size_t>(e - pos_, 1)));
  }

  bool string(std::string* out) {
    if (!expect('"')) return false;
    out->clear();
    while (pos_ < s_.size() && s_[pos_] != '"') {
      if (s_[pos_] == '\\' && pos_ + 1 < s_.size()) pos_++;
      out->push_back(s_[pos_++]);
    }
    if (pos_ >= s_.size()) return fail("unterminated string");
    pos_++;
    return true;
  }

  /* Skips any JSON value (members we do not use). */
  bool skipValue(int depth = 0) {
    skipWs();
    if (depth > 64) return fail("nesting too deep");
    char c = peek();
    if (c == '"') {
      std::string tmp;
      return string(&tmp);
    }
    if (c == '[' || c == '{') {
      char close = c == '[' ? ']' : '}';
      pos_++;
      skipWs();
      if (peek() == close) return pos_++, true;
      for (;;) {
        if (c == '{') {
          std::string k;
          skipWs();
          if (!string(&k) || !expect(':')) return false;
        }
        if (!skipValue(depth + 1)) return false;
        skipWs();
        if (peek() == ',') {
          pos_++;
          continue;
        }
        return expect(close);
      }
    }
    size_t b = pos_;
    while (pos_ < s_.size() && !strchr(",]} \t\r\n", s_[pos_])) pos_++;
    if (pos_ == b) return fail("expected a value, found " + found());
    return true;
  }

  bool number(double* v) {
    skipWs();
    size_t b = pos_;
    while (pos_ < s_.size() && !strchr(",]} \t\r\n", s_[pos_])) pos_++;
    std::string tok = s_.substr(b, pos_ - b);
    if (!parseNumber(tok, v)) {
      pos_ = b;
      return fail((tok.empty() ? found() : quote(tok)) + " is not a finite number");
    }
    return true;
  }

  bool table(LoadTable* t) {
    if (!expect('[')) return false;
    skipWs();
    if (peek() == ']') return fail("empty table (expected one array of loads per layer)");
    for (int row = 0;; row++) {
      skipWs();
      if (peek() != '[') return fail("layer " + std::to_string(row) + ": expected an array of loads, found " + found());
      pos_++;
      std::vector<double> vals;
      skipWs();
      if (peek() != ']') {
        for (;;) {
          double v;
          if (!number(&v)) {
            std::string inner = err_;
            err_.clear();
            return fail("layer " + std::to_string(row) + ", expert " + std::to_string(vals.size()) + ": " +
                        inner.substr(inner.find(": ") + 2));
          }
          vals.push_back(v);
          skipWs();
          if (peek() == ',') {
            pos_++;
            continue;
          }
          if (!expect(']')) return false;
          break;
        }
      } else {
        pos_++;
      }
      std::string addErr;
      if (!addRow(vals, "layer " + std::to_string(row), t, &addErr)) return fail(addErr);
      skipWs();
      if (peek() == ',') {
        pos_++;
        continue;
      }
      return expect(']');
    }
  }

  bool objectWithTable(LoadTable* t) {
    if (!expect('{')) return false;
    bool got = false;
    skipWs();
    if (peek() == '}') return fail("the object has no \"loads\" member");
    for (;;) {
      std::string key;
      skipWs();
      if (!string(&key) || !expect(':')) return false;
      if (!got && (key == "loads" || key == "weight")) {
        skipWs();
        if (!table(t)) return false;
        got = true;
      } else if (!skipValue()) {
        return false;
      }
      skipWs();
      if (peek() == ',') {
        pos_++;
        continue;
      }
      if (!expect('}')) return false;
      break;
    }
    if (!got) return fail("the object has no \"loads\" member (an array of layers of per-expert loads)");
    return true;
  }
};

}  // namespace

bool parseLoadTable(const std::string& text, TableFormat format, LoadTable* table, std::string* error) {
  *table = LoadTable();
  if (format == TableFormat::Auto) {
    std::string t = trim(text);
    format = (!t.empty() && (t[0] == '[' || t[0] == '{')) ? TableFormat::Json : TableFormat::Csv;
  }
  if (format == TableFormat::Json) {
    JsonReader r(text);
    return r.parse(table, error);
  }
  return parseCsv(text, table, error);
}

bool readLoadTable(const std::string& path, TableFormat format, LoadTable* table, std::string* error) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *error = "cannot open '" + path + "': " + strerror(errno);
    return false;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  if (format == TableFormat::Auto && path.size() > 5 && path.compare(path.size() - 5, 5, ".json") == 0)
    format = TableFormat::Json;
  std::string err;
  if (!parseLoadTable(ss.str(), format, table, &err)) {
    *error = path + ": " + err;
    return false;
  }
  return true;
}

}  // namespace eplb
}  // namespace ep
