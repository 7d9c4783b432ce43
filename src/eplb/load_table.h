/*************************************************************************
 * epcomm: reading an expert load table (layers x experts) from CSV or JSON.
 * Used by tools/ep-eplb; lives in the library so that the unit tests can
 * exercise the parser directly.
 * SPDX-License-Identifier: Apache-2.0
 *
 * CSV: one layer per line, comma-separated numbers; blank lines and lines
 *      starting with '#' are ignored; a first line without any number (a
 *      header such as "e0,e1,...") is skipped.
 * JSON: an array of arrays of numbers, or an object whose "loads" (or
 *      "weight") member is one.
 *************************************************************************/
#ifndef EP_EPLB_LOAD_TABLE_H_
#define EP_EPLB_LOAD_TABLE_H_

#include <string>
#include <vector>

namespace ep {
namespace eplb {

struct LoadTable {
  int layers = 0;
  int experts = 0;
  std::vector<double> values; /* [layers x experts] */
};

enum class TableFormat { Auto, Csv, Json };

/* Parses `text`. On failure returns false and sets *error to a message that
 * names the line (and column or row) and what was wrong. */
bool parseLoadTable(const std::string& text, TableFormat format, LoadTable* table, std::string* error);

/* Reads and parses a file; Auto picks JSON for a .json name or text starting
 * with '[' or '{', CSV otherwise. */
bool readLoadTable(const std::string& path, TableFormat format, LoadTable* table, std::string* error);

}  // namespace eplb
}  // namespace ep

#endif  // EP_EPLB_LOAD_TABLE_H_
