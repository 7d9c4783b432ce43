/*************************************************************************
 * epcomm: NCCL-style device/interface name lists (EP_IB_HCA, EP_SOCKET_IFNAME).
 * SPDX-License-Identifier: Apache-2.0
 *
 * Grammar: a comma list of `name[:port]` entries.
 *   - a leading `^` excludes the listed names instead of selecting them;
 *   - a leading `=` (after any `^`) requires exact names; otherwise each entry
 *     is a prefix ("mlx5" matches mlx5_0, mlx5_1, ...);
 *   - `:port` restricts an entry to one port (verbs ports; ignored for
 *     interfaces, which pass port -1).
 * Examples: "mlx5_0:1,mlx5_3"  "^=mlx5_bond_0"  "eth,ib"  "^docker,lo".
 * An empty or missing list matches everything.
 *************************************************************************/
#ifndef EP_NAME_FILTER_H_
#define EP_NAME_FILTER_H_

#include <string>
#include <vector>

struct epNameFilter {
  struct Entry {
    std::string name;
    int port = -1; /* -1: any port */
  };
  bool exclude = false;
  bool exact = false;
  std::vector<Entry> entries;

  /* Parses `spec` (NULL or "" gives the match-all filter). */
  static epNameFilter parse(const char* spec);
  /* True if the device/interface `name` (and `port`, -1 when not applicable) is selected. */
  bool matches(const char* name, int port = -1) const;
  bool empty() const { return entries.empty(); }
};

#endif  // EP_NAME_FILTER_H_
