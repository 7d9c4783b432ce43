/*************************************************************************
 * ep-topo: output formats.
 * SPDX-License-Identifier: Apache-2.0
 *************************************************************************/
#ifndef EP_TOOLS_TOPO_PRINT_H_
#define EP_TOOLS_TOPO_PRINT_H_

#include <cstdio>

#include "topo/topo.h"

void epTopoPrintTable(const epTopoMachine& m, FILE* f);
void epTopoPrintJson(const epTopoMachine& m, FILE* f);
/* --comm: run under a launcher; returns the process exit status. */
int epTopoCommReport();

#endif  // EP_TOOLS_TOPO_PRINT_H_
