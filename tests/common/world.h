/*************************************************************************
 * epcomm tests: how a test or perf process learns its rank and joins a comm.
 * SPDX-License-Identifier: Apache-2.0
 *
 * Launchers: `mpirun -np N bin` (OpenMPI env vars), `scripts/eprun -np N bin`
 * (no MPI), or a single process (rank 0 of 1). MPI is only a launcher: the
 * processes meet through epcomm's own bootstrap at EP_COMM_ID (default
 * 127.0.0.1:<EP_TEST_PORT or 29517>), so nothing links MPI.
 *************************************************************************/
#ifndef EP_TESTS_WORLD_H_
#define EP_TESTS_WORLD_H_

#include <string>

#include "epcomm.h"

struct epTestWorld {
  int rank = 0;
  int size = 1;
  int localRank = 0;
  int localSize = 1;
};

/* Reads OMPI_COMM_WORLD_*, PMI_*, or EP_RANK/EP_NRANKS/EP_LOCAL_RANK. */
epTestWorld epTestWorldFromEnv();

/* Selects CUDA device localRank % deviceCount (when a GPU exists), sets a
 * default EP_COMM_ID if none is set, and creates the communicator. */
epResult_t epTestCommInit(const epTestWorld& w, const epConfig_t* config, epComm_t* comm);

/* Sets EP_COMM_ID to 127.0.0.1:<EP_TEST_PORT or 29517> unless already set.
 * Port layout under that address: +0 the main comm's bootstrap, +1 the
 * tests' out-of-band exchange (oob.h), +2.. extra comms (epTestCommInitAt). */
void epTestDefaultCommId();

/* Creates a communicator of `nranks` whose bootstrap root listens at the
 * EP_COMM_ID host with port + portOffset (offset >= 2; every member passes the
 * same offset). For tests that need a second comm (handles from another comm,
 * error isolation) or a private single-rank comm (nranks 1, offset per rank). */
epResult_t epTestCommInitAt(int rank, int nranks, int portOffset, const epConfig_t* config, epComm_t* comm);

/* Number of CUDA devices visible (0 without a GPU or driver). */
int epTestCudaDeviceCount();

/* Empty when a CUDA device is usable; otherwise the reason a GPU suite skips,
 * starting with "no CUDA device:" and ending with what the suite needs. */
std::string epTestNoGpuReason(const char* needs);

/* Text for an epcomm failure in test messages: "epInvalidArgument (last error text)". */
std::string epTestErrText(epResult_t r, epComm_t comm);

#endif  // EP_TESTS_WORLD_H_
