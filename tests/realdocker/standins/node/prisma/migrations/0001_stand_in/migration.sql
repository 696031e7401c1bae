-- CreateTable
CREATE TABLE "StandIn" (
    "id" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "StandIn_pkey" PRIMARY KEY ("id")
);
