/*************************************************************************
 * epcomm: name lists (see name_filter.h).
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#include "core/name_filter.h"

#include <cstdlib>
#include <cstring>

epNameFilter epNameFilter::parse(const char* spec) {
  epNameFilter f;
  if (spec == nullptr) return f;
  const char* p = spec;
  while (*p == ' ') p++;
  if (*p == '^') { f.exclude = true; p++; }
  if (*p == '=') { f.exact = true; p++; }
  std::string s(p);
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    std::string tok = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    // Trim blanks so that "mlx5_0, mlx5_1" behaves as the user meant.
    size_t b = tok.find_first_not_of(" \t"), e = tok.find_last_not_of(" \t");
    tok = (b == std::string::npos) ? std::string() : tok.substr(b, e - b + 1);
    if (!tok.empty()) {
      Entry ent;
      size_t colon = tok.find(':');
      if (colon != std::string::npos) {
        ent.port = atoi(tok.c_str() + colon + 1);
        tok.resize(colon);
      }
      ent.name = tok;
      f.entries.push_back(ent);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return f;
}

bool epNameFilter::matches(const char* name, int port) const {
  if (entries.empty()) return true;
  bool hit = false;
  for (const Entry& e : entries) {
    bool nameOk = exact ? e.name == name : strncmp(name, e.name.c_str(), e.name.size()) == 0;
    bool portOk = e.port == -1 || port == -1 || e.port == port;
    if (nameOk && portOk) { hit = true; break; }
  }
  return exclude ? !hit : hit;
}
